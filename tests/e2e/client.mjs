// Minimal MCP client for end-to-end tests.
//
// Usage: node tests/e2e/client.mjs SPEC.json
//
// SPEC.json: {"command": "...", "args": [...], "env": {...}, "cwd": "...",
//             "calls": [{"name": "tool", "arguments": {...}}, ...]}
//
// Prints exactly one JSON line to stdout:
//   {"server": ..., "tools": [...], "results": [{"ok": true, "result": ...} |
//                                               {"ok": false, "error": "...", "code": ...}]}
// Exits 1 (message on stderr) only if the session itself cannot be set up.

import { readFile } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';

// Generous, so a slow proxy start-up or policy evaluation is not reported as a failure.
const TIMEOUT_MS = 60_000;

async function main(specPath) {
  const spec = JSON.parse(await readFile(specPath, 'utf8'));

  const transport = new StdioClientTransport({
    command: spec.command,
    args: spec.args ?? [],
    // The SDK only forwards a small allow-list of variables by default;
    // merge over the full environment so PATH, HOME, etc. reach the child.
    env: { ...process.env, ...(spec.env ?? {}) },
    cwd: spec.cwd,
    // Child diagnostics go straight to our stderr; stdout is reserved for the result line.
    stderr: 'inherit',
  });

  const client = new Client({ name: 'behavry-e2e', version: '1.0.0' });
  await client.connect(transport, { timeout: TIMEOUT_MS });

  try {
    const { tools } = await client.listTools(undefined, { timeout: TIMEOUT_MS });

    const results = [];
    for (const call of spec.calls ?? []) {
      // A JSON-RPC error (e.g. a denied call) must not abort the remaining calls.
      try {
        const result = await client.callTool(
          { name: call.name, arguments: call.arguments ?? {} },
          undefined,
          { timeout: TIMEOUT_MS },
        );
        results.push({ ok: true, result });
      } catch (err) {
        results.push({ ok: false, error: err?.message ?? String(err), code: err?.code ?? null });
      }
    }

    return {
      server: client.getServerVersion() ?? null,
      tools: tools.map((t) => t.name),
      results,
    };
  } finally {
    await client.close();
  }
}

if (process.argv.length !== 3) {
  process.stderr.write('usage: node client.mjs SPEC.json\n');
  process.exit(1);
}

main(process.argv[2]).then(
  (output) => {
    // Exit only after the line is flushed, and do not wait on stray handles.
    process.stdout.write(JSON.stringify(output) + '\n', () => process.exit(0));
  },
  (err) => {
    process.stderr.write(`behavry-e2e: ${err?.message ?? err}\n`);
    process.exit(1);
  },
);

// Minimal MCP client for end-to-end tests.
//
// Usage: node tests/e2e/client.mjs SPEC.json
//
// SPEC.json: {"command": "...", "args": [...], "env": {...}, "cwd": "...",
//             "calls": [{"name": "tool", "arguments": {...}}, ...],
//             "elicitation": [ANSWER, ...],
//             "survey": true, "reads": ["uri", ...], "readListed": true,
//             "prompts": [{"name": "prompt", "arguments": {...}}, ...]}
//
// With "elicitation", the client declares the elicitation capability and answers the server's
// `elicitation/create` requests with the given answers in order (the last one repeats). An answer
// is an ElicitResult ({"action": "accept", "content": {...}} | {"action": "decline"} |
// {"action": "cancel"}), or "hang": never answer, until the server withdraws the request.
//
// Prints exactly one JSON line to stdout:
//   {"server": ..., "tools": [...], "results": [{"ok": true, "result": ...} |
//                                               {"ok": false, "error": "...", "code": ...}],
//    "elicitations": [{"params": ..., "answer": ... | "withdrawn"}],
//    "listed": {"tools": [...], "prompts": [...], "resources": [...], "resourceTemplates": [...]},
//    "reads": [{"uri": ..., "ok": ..., "result" | "error": ...}],
//    "prompts": [{"name": ..., "ok": ..., "result" | "error": ...}]}
//
// With "survey", every page of every list is fetched in full ("listed"); "readListed" reads every
// listed resource after the "reads"; "prompts" are fetched with prompts/get. Without these the
// output has none of the three keys.
// Exits 1 (message on stderr) only if the session itself cannot be set up.

import { readFile } from 'node:fs/promises';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';

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

  const answers = spec.elicitation;
  const elicitations = [];
  const client = new Client(
    { name: 'behavry-e2e', version: '1.0.0' },
    answers ? { capabilities: { elicitation: {} } } : undefined,
  );
  if (answers) {
    client.setRequestHandler(ElicitRequestSchema, async (request, extra) => {
      const seen = { params: request.params };
      elicitations.push(seen);
      const answer = answers[Math.min(elicitations.length - 1, answers.length - 1)];
      if (answer === 'hang') {
        await new Promise((resolve) => extra.signal.addEventListener('abort', resolve));
        seen.answer = 'withdrawn';
        throw new Error('withdrawn');
      }
      seen.answer = answer;
      return answer;
    });
  }
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

    const output = {
      server: client.getServerVersion() ?? null,
      tools: tools.map((t) => t.name),
      results,
      elicitations,
    };
    if (spec.survey) {
      output.listed = {
        tools: await allPages((p) => client.listTools(p, { timeout: TIMEOUT_MS }), 'tools'),
        prompts: await allPages((p) => client.listPrompts(p, { timeout: TIMEOUT_MS }), 'prompts'),
        resources: await allPages(
          (p) => client.listResources(p, { timeout: TIMEOUT_MS }),
          'resources',
        ),
        resourceTemplates: await allPages(
          (p) => client.listResourceTemplates(p, { timeout: TIMEOUT_MS }),
          'resourceTemplates',
        ),
      };
    }
    if (spec.reads || spec.readListed) {
      const uris = [...(spec.reads ?? [])];
      if (spec.readListed) {
        const listed =
          output.listed?.resources ??
          (await allPages((p) => client.listResources(p, { timeout: TIMEOUT_MS }), 'resources'));
        uris.push(...listed.map((r) => r.uri));
      }
      output.reads = [];
      for (const uri of uris) {
        output.reads.push({
          uri,
          ...(await outcome(() => client.readResource({ uri }, { timeout: TIMEOUT_MS }))),
        });
      }
    }
    if (spec.prompts) {
      output.prompts = [];
      for (const prompt of spec.prompts) {
        output.prompts.push({
          name: prompt.name,
          ...(await outcome(() =>
            client.getPrompt(
              { name: prompt.name, arguments: prompt.arguments ?? {} },
              { timeout: TIMEOUT_MS },
            ),
          )),
        });
      }
    }
    return output;
  } finally {
    await client.close();
  }
}

// Every item of a paginated list, following nextCursor.
async function allPages(list, key) {
  const items = [];
  let cursor;
  do {
    const page = await list(cursor ? { cursor } : undefined);
    items.push(...(page[key] ?? []));
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

// A request's result, or its error, without aborting the rest of the script.
async function outcome(request) {
  try {
    return { ok: true, result: await request() };
  } catch (err) {
    return { ok: false, error: err?.message ?? String(err), code: err?.code ?? null };
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

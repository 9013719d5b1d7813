// A stdio MCP server decoding with Go's encoding/json, as mcp-go does: struct fields are matched
// case-insensitively with Unicode simple folding, and the last matching key wins. tools/call
// answers with the name and arguments it decoded, and appends them to the file named by
// ECHO_SERVER_LOG, so a test can see what the server ran. The initialize answer carries a
// number beyond double range, valid JSON that serde_json refuses.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
)

type request struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  string          `json:"method"`
	Params  struct {
		Name      string         `json:"name"`
		Arguments map[string]any `json:"arguments"`
	} `json:"params"`
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	for in.Scan() {
		var req request
		if err := json.Unmarshal(in.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "echoserver:", err)
			continue
		}
		if len(req.ID) == 0 {
			continue // a notification
		}
		var result string
		switch req.Method {
		case "initialize":
			result = `{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"go-echo","version":"1"},"_meta":{"huge":1e400}}`
		case "tools/list":
			result = `{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}`
		case "tools/call":
			ran, _ := json.Marshal(map[string]any{"name": req.Params.Name, "arguments": req.Params.Arguments})
			if path := os.Getenv("ECHO_SERVER_LOG"); path != "" {
				if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
					f.Write(append(ran, '\n'))
					f.Close()
				}
			}
			text, _ := json.Marshal(string(ran))
			result = `{"content":[{"type":"text","text":` + string(text) + `}]}`
		default:
			result = `{}`
		}
		fmt.Fprintf(out, `{"jsonrpc":"2.0","id":%s,"result":%s}`+"\n", req.ID, result)
		out.Flush()
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"io"
)

// bodyFilter keeps request bodies out of logs at info level and above. mautrix logs a
// failed request at error level with its JSON body (a message's text, a pairing
// code); the bridge's promise is that message bodies only ever appear at debug.
type bodyFilter struct{ w io.Writer }

var reqBodyKey = []byte(`"req_body"`)

func (f bodyFilter) Write(p []byte) (int, error) {
	if !bytes.Contains(p, reqBodyKey) {
		return f.w.Write(p)
	}
	var entry map[string]json.RawMessage
	if err := json.Unmarshal(p, &entry); err != nil {
		return f.w.Write(p)
	}
	var level string
	_ = json.Unmarshal(entry["level"], &level)
	if level == "debug" || level == "trace" {
		return f.w.Write(p)
	}
	entry["req_body"] = json.RawMessage(`"(omitted)"`)
	out, err := json.Marshal(entry)
	if err != nil {
		return f.w.Write(p)
	}
	if _, err = f.w.Write(append(out, '\n')); err != nil {
		return 0, err
	}
	return len(p), nil
}

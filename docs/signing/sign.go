// Sign a mailops command: the command as JSON on stdin, the signed command (one line) on stdout.
//
//	MAILOPS_KEY="$(cat /run/secrets/billing-key)" go run sign.go < command.json
//
// MAILOPS_KEY is the producer's key: the same text the worker reads from the producer's
// key_env variable or key_file. Standard library only (Go 1.18 or later).
//
// encoding/json is not used to write the canonical form: it escapes <, >, & and U+2028/U+2029,
// which the canonical form keeps as they are.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
)

// canonical writes v in the canonical form: keys sorted at every level, no spaces,
// non-ASCII as UTF-8, "/" unescaped.
func canonical(buf *bytes.Buffer, v any) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, k)
			buf.WriteByte(':')
			canonical(buf, x[k])
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, item := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			canonical(buf, item)
		}
		buf.WriteByte(']')
	case string:
		writeString(buf, x)
	case json.Number: // integers, as sent
		buf.WriteString(x.String())
	case bool:
		fmt.Fprint(buf, x)
	case nil:
		buf.WriteString("null")
	}
}

func writeString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		default:
			if r < 0x20 {
				fmt.Fprintf(buf, `\u%04x`, r)
			} else {
				buf.WriteRune(r)
			}
		}
	}
	buf.WriteByte('"')
}

// sign returns the lower-case hex HMAC-SHA256 of the command's canonical form (without "signature").
func sign(command map[string]any, key []byte) string {
	unsigned := make(map[string]any, len(command))
	for k, v := range command {
		if k != "signature" {
			unsigned[k] = v
		}
	}
	var buf bytes.Buffer
	canonical(&buf, unsigned)
	mac := hmac.New(sha256.New, key)
	mac.Write(buf.Bytes())
	return hex.EncodeToString(mac.Sum(nil))
}

func main() {
	key := os.Getenv("MAILOPS_KEY")
	if key == "" {
		fmt.Fprintln(os.Stderr, "set MAILOPS_KEY to the producer key")
		os.Exit(2)
	}
	decoder := json.NewDecoder(os.Stdin)
	decoder.UseNumber()
	var command map[string]any
	if err := decoder.Decode(&command); err != nil {
		fmt.Fprintln(os.Stderr, "the command is not a JSON object:", err)
		os.Exit(2)
	}
	command["signature"] = sign(command, []byte(key))
	var out bytes.Buffer
	canonical(&out, command)
	fmt.Println(out.String())
}

#!/bin/sh
# Sign a mailops command: the command as JSON on stdin, the signed command (one line) on stdout.
#
#   MAILOPS_KEY="$(cat /run/secrets/billing-key)" sh sign.sh < command.json | redis-cli -x XADD mailops:commands '*' body
#
# MAILOPS_KEY is the producer's key: the same text the worker reads from the producer's key_env
# variable or key_file. Needs openssl and python3 (or jq: CANONICALISER=jq). Note that openssl
# takes the key as an argument, so other users of this host can see it in the process list.
set -eu

: "${MAILOPS_KEY:?set MAILOPS_KEY to the producer key}"

# The canonical form: the command without "signature", keys sorted at every level, no spaces,
# non-ASCII as UTF-8 and "/" unescaped.
case "${CANONICALISER:-python3}" in
python3)
    canonical=$(python3 -c 'import json, sys
command = json.load(sys.stdin)
command.pop("signature", None)
sys.stdout.write(json.dumps(command, sort_keys=True, separators=(",", ":"), ensure_ascii=False))')
    ;;
jq)
    canonical=$(jq -S -c 'del(.signature)')
    ;;
*)
    echo "CANONICALISER must be python3 or jq" >&2
    exit 2
    ;;
esac

signature=$(printf '%s' "$canonical" | openssl dgst -sha256 -hmac "$MAILOPS_KEY" -r | cut -d ' ' -f 1)

# The signed command: the canonical object with one more field (key order does not matter).
printf '%s,"signature":"%s"}\n' "${canonical%\}}" "$signature"

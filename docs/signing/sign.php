<?php
// Sign a mailops command: the command as JSON on stdin, the signed command (one line) on stdout.
//
//   MAILOPS_KEY="$(cat /run/secrets/billing-key)" php sign.php < command.json
//
// MAILOPS_KEY is the producer's key: the same text the worker reads from the producer's
// key_env variable or key_file. PHP 7.1 or later.

declare(strict_types=1);

const JSON_FLAGS = JSON_UNESCAPED_UNICODE | JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_LINE_TERMINATORS
    | JSON_THROW_ON_ERROR;

// The canonical form: keys sorted at every level, no spaces, non-ASCII as UTF-8, "/" unescaped.
// Objects are decoded as stdClass (not arrays) so that {} stays {} and [] stays [].
function mailops_canonical($value): string
{
    if ($value instanceof stdClass) {
        $fields = get_object_vars($value);
        ksort($fields, SORT_STRING);
        $parts = [];
        foreach ($fields as $key => $item) {
            $parts[] = json_encode((string) $key, JSON_FLAGS) . ':' . mailops_canonical($item);
        }
        return '{' . implode(',', $parts) . '}';
    }
    if (is_array($value)) {
        return '[' . implode(',', array_map('mailops_canonical', $value)) . ']';
    }
    return json_encode($value, JSON_FLAGS);
}

function mailops_sign(stdClass $command, string $key): string
{
    $unsigned = clone $command;
    unset($unsigned->signature);
    return hash_hmac('sha256', mailops_canonical($unsigned), $key);
}

// Run as a script (not included by another file, e.g. docs/webhooks/billing.php): sign stdin.
if (realpath((string) ($_SERVER['SCRIPT_FILENAME'] ?? '')) === __FILE__) {
    $key = getenv('MAILOPS_KEY');
    if ($key === false || $key === '') {
        fwrite(STDERR, "set MAILOPS_KEY to the producer key\n");
        exit(2);
    }
    $command = json_decode(stream_get_contents(STDIN), false, 512, JSON_THROW_ON_ERROR);
    $command->signature = mailops_sign($command, $key);
    echo json_encode($command, JSON_FLAGS), "\n";
}

<?php
// A billing webhook handler: "invoice INVOICE of cPanel account ACCOUNT was paid, lift billing's
// suspension of its outgoing mail", sent to the mailops HTTP ingress and answered synchronously.
//
//   MAILOPS_URL=http://127.0.0.1:8080 MAILOPS_KEY="$(cat /run/secrets/billing-key)" \
//       php billing.php ACCOUNT INVOICE [BACKEND]
//
// MAILOPS_KEY is the key of producer "billing" ([producers.billing] key_env/key_file).
// The Idempotency-Key is derived from the invoice, so a retried webhook never runs twice.
// Exit codes, and what the handler should do next:
//   0  unsuspended: the panel no longer holds the account's outgoing mail
//   3  billing's hold is gone, but another hold (e.g. abuse) keeps the account suspended: status "held"
//   4  not finished yet (202): poll status_url later, or send again with the same key
//   1  refused or failed for good (401/403/409/422, or status failed): fix, do not retry as is
//   2  usage error
// PHP 7.1 or later; only the standard http stream wrapper is used (no curl extension needed).

declare(strict_types=1);

require __DIR__ . '/../signing/sign.php';   // mailops_sign(): the HMAC over the canonical form

function mailops_post(string $url, stdClass $command, int $wait): array
{
    $context = stream_context_create(['http' => [
        'method' => 'POST',
        'header' => "Content-Type: application/json\r\nIdempotency-Key: {$command->id}\r\n",
        'content' => json_encode($command, JSON_FLAGS),
        'ignore_errors' => true,            // read the JSON body of 4xx answers too
        'timeout' => $wait + 10,
    ]]);
    $body = file_get_contents("{$url}/v1/commands?wait={$wait}", false, $context);
    if ($body === false || !isset($http_response_header[0])) {
        throw new RuntimeException("mailops ingress unreachable at {$url}");
    }
    preg_match('{HTTP/\S+ (\d{3})}', $http_response_header[0], $status);
    return [(int) $status[1], json_decode($body, true, 512, JSON_THROW_ON_ERROR)];
}

if ($argc < 3) {
    fwrite(STDERR, "usage: php billing.php ACCOUNT INVOICE [BACKEND]\n");
    exit(2);
}
[$account, $invoice, $backend] = [$argv[1], $argv[2], $argv[3] ?? 'whm1'];
$url = rtrim((string) getenv('MAILOPS_URL'), '/');
$key = (string) getenv('MAILOPS_KEY');

$command = new stdClass();
$command->id = "billing-paid-{$invoice}";                   // = the Idempotency-Key, signed with the rest
$command->command = 'unsuspend_outgoing';
$command->backend = $backend;
$command->args = (object) ['user' => $account];
$command->producer = 'billing';
// Fresh (older than 15 minutes is refused), in milliseconds: commands on one target run in this order.
$command->issued_at = (new DateTimeImmutable('now', new DateTimeZone('UTC')))->format('Y-m-d\TH:i:s.v\Z');
$command->signature = mailops_sign($command, $key);

[$status, $answer] = mailops_post($url, $command, 30);
if ($status === 200) {
    $outcome = $answer['outcome'];
    echo "{$command->id}: {$outcome['status']}\n";
    if ($outcome['status'] === 'succeeded') {
        exit(0);
    }
    if ($outcome['status'] === 'held') {
        echo "still suspended: {$outcome['details']['holds']['why']}\n";
        exit(3);
    }
    echo "failed: {$outcome['error']['kind']}: {$outcome['error']['message']}\n";
    exit(1);
}
if ($status === 202) {
    echo "{$command->id}: not finished yet; poll {$url}{$answer['status_url']}\n";
    exit(4);
}
$error = $answer['error'];
echo "{$command->id}: refused ({$status}) {$error['field']}/{$error['rule']}: {$error['message']}\n";
exit(1);

#!/usr/bin/perl
# Redis mode, configuration: the URL forms of sse_redis that nginx -t
# accepts and the ones it refuses (with an [emerg] naming sse_redis, never
# a crash), the other sse_redis_* directives and their bad values; then
# AUTH and SELECT really used against a real redis-server (requirepass and
# db 2, an ACL user), and a wrong or missing password: status "down" and
# POST 503 {"error":"redis unavailable"}, with the reason in error.log.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

# a port nothing listens on: nginx -t does not connect
my $P = SSETest::_free_port();

# --- accepted
my @good = (
    ['host:port',                  "redis://127.0.0.1:$P"],
    ['host without port (6379)',   "redis://127.0.0.1"],
    ['a name that resolves',       "redis://localhost:$P"],
    [':password@ and /db',         "redis://:secret\@127.0.0.1:$P/2"],
    ['user:password@',             "redis://alice:secret\@127.0.0.1:$P"],
    ['user:password@ and /db 15',  "redis://alice:secret\@127.0.0.1:$P/15"],
    ['/0',                         "redis://127.0.0.1:$P/0"],
);
for my $g (@good) {
    my ($name, $url) = @$g;
    my $r = nginx_config_test(http => "sse_redis $url;\n");
    ok($r->{ok}, "sse_redis $url ($name): nginx -t passes") or diag($r->{output});
}
{
    my $r = nginx_config_test(http => <<"EOH");
    sse_redis redis://127.0.0.1:$P;
    sse_redis_prefix app1:;
    sse_redis_payload event-stream;
    sse_redis_log 500;
    sse_redis_timeout 250ms;
EOH
    ok($r->{ok}, 'every sse_redis_* directive with a good value: nginx -t passes') or diag($r->{output});
    $r = nginx_config_test(http => "sse_redis redis://127.0.0.1:$P;\nsse_redis_payload data;\n"
                                 . "sse_redis_timeout 3s;\nsse_redis_log 1;\n");
    ok($r->{ok}, 'sse_redis_payload data, sse_redis_timeout 3s, sse_redis_log 1: nginx -t passes')
        or diag($r->{output});
}

# --- refused
my $base = "sse_redis redis://127.0.0.1:$P;\n";
my @bad = (
    ['another scheme',           http => "sse_redis http://127.0.0.1:$P;\n"],
    ['no scheme',                http => "sse_redis 127.0.0.1:$P;\n"],
    ['port not a number',        http => "sse_redis redis://127.0.0.1:abc;\n"],
    ['empty port',               http => "sse_redis redis://127.0.0.1:;\n"],
    ['port 0',                   http => "sse_redis redis://127.0.0.1:0;\n"],
    ['port 70000',               http => "sse_redis redis://127.0.0.1:70000;\n"],
    ['db not a number',          http => "sse_redis redis://127.0.0.1:$P/abc;\n"],
    ['db negative',              http => "sse_redis redis://127.0.0.1:$P/-1;\n"],
    ['empty host',               http => "sse_redis redis://:$P;\n"],
    ['empty host after password', http => "sse_redis redis://:pw\@:$P;\n"],
    ['nothing after the scheme', http => "sse_redis redis://;\n"],
    ['a host that does not resolve', http => "sse_redis redis://no-such-host.invalid:6379;\n",
        like => qr/no-such-host\.invalid/],
    ['sse_redis without a value', http => "sse_redis;\n"],
    ['sse_redis with two values', http => "sse_redis redis://127.0.0.1:$P redis://127.0.0.1:$P;\n"],
    ['sse_redis twice',          http => $base . $base, like => qr/duplicate/],
    ['sse_redis in a server',    server => "sse_redis redis://127.0.0.1:$P;\n$SSETest::DEFAULT_SERVER"],
    ['sse_redis in a location',  server => "location /x { sse_redis redis://127.0.0.1:$P; }\n"],
    ['sse_redis_payload json',   http => $base . "sse_redis_payload json;\n",
        like => qr/json|"?data"?.*"?event-stream"?/],
    ['sse_redis_payload in a server', http => $base,
        server => "sse_redis_payload data;\n$SSETest::DEFAULT_SERVER"],
    ['sse_redis_log abc',        http => $base . "sse_redis_log abc;\n"],
    ['sse_redis_log -5',         http => $base . "sse_redis_log -5;\n"],
    ['sse_redis_timeout abc',    http => $base . "sse_redis_timeout abc;\n"],
    ['sse_redis_timeout with two values', http => $base . "sse_redis_timeout 1s 2s;\n"],
    ['sse_redis_prefix with two values',  http => $base . "sse_redis_prefix a: b:;\n"],
    ['sse_redis_prefix in a location', http => $base,
        server => "location /x { sse_redis_prefix app:; }\n"],
);
for my $c (@bad) {
    my ($name, %o) = @$c;
    my $want = delete $o{like};
    my $r = nginx_config_test(%o);
    ok(!$r->{ok}, "$name: nginx -t fails");
    like($r->{output}, qr/\[emerg\]/, "$name: with an [emerg] message");
    unlike($r->{output}, qr/unknown directive/, "$name: refused for its value, not as an unknown directive");
    like($r->{output}, qr/sse_redis/, "$name: the message names the sse_redis directive")
        or diag($r->{output});
    like($r->{output}, $want, "$name: it says why") if $want;
    unlike($r->{output}, qr/signal|segmentation|core dumped/i, "$name: no crash");
}

# --- AUTH and SELECT against a real redis-server
my $r = SSERedis->start(requirepass => 's3cret',
                        users => ['alice on >wonder ~* &* +@all']);

# the Redis clients that are not this test's admin connection
sub node_clients {
    my $me = $r->cmd('CLIENT', 'ID');
    return grep { !/\bid=$me\b/ } split /\n/, $r->cmd('CLIENT', 'LIST');
}

{
    my $A = start_node(redis => $r, url_opts => { db => 2 }, name => 'A (redis://:s3cret@.../2)');
    my $s = $A->sse_connect('/events/news');
    is($s->status, 200, 'A: stream opens');
    my $res = $A->publish('/pub/news', 'in db 2');
    is($res->{status}, 201, 'A: POST answers 201 (AUTH with the password worked)');
    my $id = $res->{json}{id} // '';
    my @e = grep { ($_->{fields}{channel} // '') eq 'news' } $r->xrange_all('sse:log', db => 2);
    is(scalar @e, 1, 'A: the entry is in sse:log of db 2 (SELECT 2 used)');
    is($e[0]{id} // '', $id, 'A: with the id the POST answered');
    is($r->cmd('DBSIZE'), 0, 'A: db 0 holds no key at all');
    my @ev = $s->read_events(count => 1, timeout => 5);
    is(join('|', map { "$_->{id}:$_->{data}" } @ev), "$id:in db 2",
       'A: the subscriber gets the event from db 2, with that id');
    my @db = map { /\bdb=(\d+)/ ? $1 : () } node_clients();
    ok(@db && grep({ $_ == 2 } @db), "A: the node's Redis connections use db 2 (CLIENT LIST dbs: @db)");
    $s->close;
    $A->stop;
}
{
    my $B = start_node(redis => $r, url_opts => { user => 'alice', password => 'wonder' },
                       name => 'B (redis://alice:wonder@...)');
    my $res = $B->publish('/pub/news', 'as alice');
    is($res->{status}, 201, 'B: POST answers 201');
    my @e = grep { ($_->{fields}{data} // '') eq 'as alice' } $r->xrange_all('sse:log');
    is(scalar @e, 1, 'B: the entry is in sse:log of db 0');
    my @users = map { /\buser=(\S+)/ ? $1 : () } node_clients();
    ok(@users && !grep({ $_ ne 'alice' } @users),
       "B: every connection of the node is authenticated as alice (users: @users)");
    $B->stop;
}

for my $case (['C', 'a wrong password', { password => 'wrong' }, qr/WRONGPASS|auth|password/i],
              ['D', 'no password (the server has requirepass)', { noauth => 1 }, qr/NOAUTH|auth|password/i]) {
    my ($n, $what, $url_opts, $why) = @$case;
    my $xlen = $r->cmd('EXISTS', 'sse:log') ? $r->xlen('sse:log') : 0;
    my $N = start_node(redis => $r, url_opts => $url_opts, ready => 0);
    ok(wait_redis($N, 'down', 10), "$n ($what): status says \"redis\":\"down\"")
        or diag('status: ' . redis_state($N));
    my $up = 0;
    for (1 .. 15) { $up++ if redis_state($N) eq 'up'; sleep 0.2 }
    is($up, 0, "$n: it never says \"up\" (3 s watched)");
    my $t0 = time();
    my $res = $N->publish('/pub/news', "with $what");
    check_json_error($res, 503, "$n: POST");
    is($res->{json}{error} // '', 'redis unavailable', "$n: the error is \"redis unavailable\"");
    ok(time() - $t0 < 3, sprintf("$n: answered in %.2fs", time() - $t0));
    my $now = $r->cmd('EXISTS', 'sse:log') ? $r->xlen('sse:log') : 0;
    is($now, $xlen, "$n: nothing was added to the log");
    my @lines = grep { /redis/i && $_ =~ $why } log_lines($N->error_log, qw(error crit alert emerg));
    ok(scalar @lines, "$n: error.log has an [error] line about Redis saying why ($why)")
        or diag("error.log:\n" . substr($N->error_log, -2000));
    $N->stop;
}

$r->stop;
done_testing;

#!/usr/bin/perl
# A long-lived HTTPS/1.1 stream does not grow its worker's memory with the
# events it gets.  Between events an idle stream gives its 16 KB TLS buffer
# back and the next write takes a new one: that must reuse what nginx
# keeps on the connection, not take a new record from the connection's
# pool each time (80 bytes an event, given back only when the stream
# ends: a stream of a ticker, open for days, grew without bound).
# One worker, one stream read by curl, 6,000 events one at a time after a
# warm-up: the worker's data size (VmData) and RSS must stay within 192 kB
# (a record per event would be some 550 kB).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $N     = 6000;
my $SLACK = 192;        # kB

ok(system('openssl version >/dev/null 2>&1') == 0, 'openssl is installed')
    or BAIL_OUT('install openssl (make deps)');
ok(system('curl --version >/dev/null 2>&1') == 0, 'curl is installed')
    or BAIL_OUT('install curl (make deps)');

my $dir = eval { make_certificate() } or BAIL_OUT($@);

my $tls_port = SSETest::_free_port();
my $srv = start_nginx(
    workers => 1,
    http => <<"EOH",
sse_heartbeat off;
sse_history 5;
ssl_certificate $dir/cert.pem;
ssl_certificate_key $dir/key.pem;
EOH
    server_extra => "        listen 127.0.0.1:$tls_port ssl;\n",
);
my ($pid) = $srv->worker_pids;
ok($pid, "the worker: $pid");

sub mem { proc_mem($pid) }

# the subscriber: curl over HTTPS/1.1, reading all it gets into a file
my $out = "$dir/stream.txt";
my $curl = fork // die "fork: $!";
if (!$curl) {
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', '/dev/null';
    exec 'curl', '-sk', '-N', '--http1.1', '-o', $out, "https://127.0.0.1:$tls_port/events/tick";
    POSIX::_exit(127);
}
ok($srv->wait_stat(subscribers => 1, 10), 'curl holds an HTTPS/1.1 stream');

sub received { my $t = SSETest::_slurp($out) // ''; return scalar(() = $t =~ /^data: /mg) }

my $k = $srv->keepalive_conn;
my $sent = 0;
sub publish_n {
    my ($n) = @_;
    my $ok = 0;
    for (1 .. $n) {
        $sent++;
        # a new connection now and then: keepalive_requests is 1000
        $k = $srv->keepalive_conn if $sent % 500 == 0;
        my $r = $srv->keepalive_http($k, 'POST', '/pub/tick', body => "tick $sent");
        $ok++ if $r->{status} == 201;
        # one event per write: the stream has it before the next is sent
        wait_until(sub { received() >= $sent }, 5, 0.0005);
    }
    return $ok;
}

is(publish_n(500), 500, 'warm-up: 500 events published');
ok(wait_until(sub { received() == $sent }, 10), 'warm-up: the stream got them');
my $m0 = mem();
ok($m0->{data} > 0 && $m0->{rss} > 0, 'the worker\'s memory can be read');
my $t0 = time();
is(publish_n($N), $N, "$N more events published, one at a time");
ok(wait_until(sub { received() == $sent }, 10), "the stream got all $sent")
    or diag('received ' . received() . " of $sent");
my @data = (SSETest::_slurp($out) // '') =~ /^data: (.*)$/mg;
is(join(',', @data), join(',', map { "tick $_" } 1 .. $sent), 'each once, in order');
my $m = mem();
diag(sprintf '%d events in %.1fs; VmData %d -> %d kB, VmRSS %d -> %d kB', $N, time() - $t0,
     $m0->{data}, $m->{data}, $m0->{rss}, $m->{rss});
for my $key ([data => 'VmData'], [rss => 'VmRSS']) {
    my ($f, $name) = @$key;
    my $grow = $m->{$f} - $m0->{$f};
    ok($grow < $SLACK, sprintf('%s grew by %d kB over %d events (%.1f bytes each), less than %d kB',
                               $name, $grow, $N, $grow * 1024 / $N, $SLACK));
}
is(($srv->worker_pids)[0], $pid, 'the same worker throughout');

kill 'TERM', $curl;
waitpid $curl, 0;
$srv->stop;
done_testing;

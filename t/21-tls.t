#!/usr/bin/perl
# Streams over HTTPS behave as over HTTP: a subscriber that stops reading
# while events pile up gets every one of them once it reads again, and a
# stream ended by DELETE delivers what was queued, then its last chunk.
# (On TLS, nginx keeps what the socket did not take in the connection's
# TLS buffer, not in the stream's output: that must be sent too.)
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use IPC::Open2;
use IO::Select;

my $node = $ENV{NODE_BIN} || 'node';
ok(system("$node --version >/dev/null 2>&1") == 0, "node is installed ($node)")
    or BAIL_OUT('install nodejs (make deps)');
ok(system('openssl version >/dev/null 2>&1') == 0, 'openssl is installed')
    or BAIL_OUT('install openssl (make deps)');

my $certdir = eval { make_certificate() } or BAIL_OUT($@);

my $tls_port = SSETest::_free_port();

# small socket buffers on nginx's side, so that the output piles up in nginx
my $srv = start_nginx(
    workers => 1,
    listen_opts => 'sndbuf=4096',
    http => <<"EOH",
sse_heartbeat off;
sse_max_pending 8m;
sse_history 1000;
ssl_certificate $certdir/cert.pem;
ssl_certificate_key $certdir/key.pem;
EOH
    server_extra => "        listen 127.0.0.1:$tls_port ssl sndbuf=4096;\n",
);

my $N = 150;                    # 150 x 3 kB: far more than the socket buffers
my $timeout = 5000 * $SSETest::SCALE;

sub client {
    my ($tls, $path) = @_;
    my $port = $tls ? $tls_port : $srv->port;
    my ($out, $in);
    my $pid = open2($out, $in, $node, "$FindBin::Bin/js/tls-stream.mjs",
                    $port, $path, $tls, $N, $timeout);
    $in->autoflush(1);
    return { pid => $pid, out => $out, in => $in };
}

sub line_of {
    my ($c, $secs) = @_;
    my $sel = IO::Select->new($c->{out});
    return undef unless $sel->can_read($secs);
    my $l = readline($c->{out});
    return defined $l ? (eval { SSETest::json_decode($l) } // { type => 'bad', line => $l })
                      : undef;
}

sub finish {
    my ($c) = @_;
    my $r = line_of($c, $timeout / 1000 + 10);
    waitpid($c->{pid}, 0);
    return $r // {};
}

for my $tls (0, 1) {
    my $what = $tls ? 'HTTPS' : 'HTTP';
    my $ch = $tls ? 'tls' : 'tcp';

    # --- a subscriber that stops reading, then reads again
    my $c = client($tls, "/events/$ch-a");
    my $ready = line_of($c, 10);
    is($ready && $ready->{status}, 200, "$what: the stream opens");
    ok($srv->wait_stat(subscribers => 1, 5), "$what: subscribed");

    my $ok = 0;
    for my $i (1 .. $N) {
        my $r = $srv->publish("/pub/$ch-a", sprintf('%04d ', $i) . ('p' x 3000));
        $ok++ if $r->{status} == 201;
    }
    is($ok, $N, "$what: $N events published while the subscriber does not read");
    print { $c->{in} } "go\n";
    my $r = finish($c);
    is($r->{error}, undef, "$what: the chunked stream is well formed");
    is($r->{events}, $N, "$what: all $N events arrive once the subscriber reads again")
        or diag(SSETest::json_encode($r));
    ok($r->{distinct} == $r->{events} && $r->{in_order}, "$what: once each, in order");
    ok($srv->wait_stat(subscribers => 0, 5), "$what: the subscriber is gone");

    # --- the same, then the channel is deleted before the subscriber reads
    $c = client($tls, "/events/$ch-b");
    $ready = line_of($c, 10);
    is($ready && $ready->{status}, 200, "$what: a second stream opens");
    ok($srv->wait_stat(subscribers => 1, 5), "$what: subscribed again");
    $ok = 0;
    for my $i (1 .. $N) {
        my $r = $srv->publish("/pub/$ch-b", sprintf('%04d ', $i) . ('d' x 3000));
        $ok++ if $r->{status} == 201;
    }
    is($ok, $N, "$what: $N more events published");
    my $del = $srv->http('DELETE', "/pub/$ch-b");
    is($del->{status}, 200, "$what: DELETE of the channel");
    print { $c->{in} } "go\n";
    $r = finish($c);
    is($r->{events}, $N, "$what: the ended stream delivers all $N queued events")
        or diag(SSETest::json_encode($r));
    ok($r->{last_chunk}, "$what: then its last chunk");
    ok($r->{closed}, "$what: then nginx closes the connection");
    ok($srv->wait_stat(subscribers => 0, 5), "$what: nothing left subscribed");
}

is($srv->stat('slow_closed'), 0, 'no stream was closed as slow');
$srv->stop;
done_testing;

#!/usr/bin/perl
# Hostile connections, over HTTP/1.1, HTTP/2 (h2c) and HTTP/2 over TLS:
# slow readers while a fast publisher runs (closed as slow and counted; the
# fast readers get everything), clients that reset mid-write, more than
# 1,000 resets at once while publishing, half-closed clients, a pipelined
# request behind a stream, HTTP/2 streams reset mid-flight or 100 at a
# time, huge headers, a zero window that is never opened, a WINDOW_UPDATE
# of 0.  nginx keeps serving: after each batch a new subscriber gets a new
# publish, the hub forgets every client that left, and the workers are the
# ones it started with.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSEHostile;
use IPC::Open2;
use IO::Select;
use IO::Socket::INET;
use Socket qw(SOL_SOCKET SO_RCVBUF SO_LINGER SHUT_WR);
use POSIX ();
use MIME::Base64 qw(encode_base64 decode_base64);
use Time::HiRes qw(time sleep);

# ---- the helpers are in t/lib/SSEHostile.pm

# ---- the server

ok(system('openssl version >/dev/null 2>&1') == 0, 'openssl is installed')
    or BAIL_OUT('install openssl (make deps)');
my $certdir = eval { make_certificate() } or BAIL_OUT($@);

my $h2port = SSETest::_free_port();
my $tlsport = SSETest::_free_port();
# small send buffers on nginx's side: a reader that does not read makes
# nginx's output pile up after a few kB, not after megabytes
my $srv = start_nginx(
    workers => 2,
    listen_opts => 'sndbuf=16k',
    http => <<"EOH",
sse_heartbeat off;
sse_history 1000;
ssl_certificate $certdir/cert.pem;
ssl_certificate_key $certdir/key.pem;
EOH
    server_extra => <<"EOS",
        listen 127.0.0.1:$h2port http2 sndbuf=16k;
        listen 127.0.0.1:$tlsport ssl http2 sndbuf=16k;
        location ~ ^/slow/(.+)\$ { sse_stream \$1; sse_max_pending 64k; }
EOS
);
my @workers = $srv->worker_pids;
is(scalar @workers, 2, 'two workers');

ok(system("$NODE --version >/dev/null 2>&1") == 0, "node is installed ($NODE)")
    or BAIL_OUT('install nodejs (make deps)');
my $h2 = h2_client();
ok(h2($h2, op => 'connect', session => 'a', port => $h2port)->{ok}, 'HTTP/2 (h2c) session');

sub datas { map { $_->{data} } @_ }

# ======================================================================
# slow readers (small SO_RCVBUF, read nothing) while a fast publisher runs

{
    my $NS = 20;
    my @fast = map { $srv->sse_connect('/slow/sl') } 1 .. 3;
    my @slow = map { $srv->sse_connect('/slow/sl', rcvbuf => 4096) } 1 .. $NS;
    is(scalar(grep { $_->status == 200 } @fast, @slow), 3 + $NS, "3 fast and $NS slow readers");
    ok($srv->wait_stat(subscribers => 3 + $NS, 5), '... all subscribed');
    my $slow0 = $srv->stat('slow_closed');
    my $N = 300;
    my (@ids, %got);
    for my $i (1 .. $N) {
        my $r = $srv->publish('/pub/sl', sprintf('%04d ', $i) . ('s' x 2000));
        push @ids, $r->{status} == 201 ? $r->{json}{id} : "failed $r->{status}";
        push @{ $got{$_} }, $fast[$_]->read_events(timeout => 0) for 0 .. $#fast;
    }
    push @{ $got{$_} }, $fast[$_]->read_events(count => $N - @{ $got{$_} }, timeout => 10) for 0 .. $#fast;
    for my $i (0 .. $#fast) {
        is_deeply([map { $_->{id} } @{ $got{$i} }], \@ids, "fast reader $i got all $N events, in order, once");
    }
    ok($srv->wait_stat(subscribers => 3, 10), "the $NS slow readers were closed")
        or diag('subscribers: ' . $srv->stat('subscribers'));
    is($srv->stat('slow_closed') - $slow0, $NS, "slow_closed counts the $NS of them");
    # each slow reader got a gapless prefix of the events, then the end
    my @bad;
    for my $k (0 .. $#slow) {
        my $s = $slow[$k];
        my $closed = $s->is_closed(10);
        my @ev = $s->read_events(timeout => 0);
        my @sid = map { $_->{id} } @ev;
        push @bad, "slow $k: " . ($closed ? '' : 'not closed, ') . scalar(@sid) . ' events'
            unless $closed && @sid < $N && "@sid" eq "@ids[0 .. $#sid]";
    }
    is("@bad", '', 'each slow reader got a gapless prefix, then its stream ended');
    $_->close for @fast, @slow;
}
ok($srv->wait_stat(subscribers => 0, 5), 'nothing left subscribed');
still_serving($srv, 'the slow readers');

# ======================================================================
# clients that reset (SO_LINGER 0) mid-write while publishing

{
    my $fast = $srv->sse_connect('/events/rst');
    my @victims = map { $srv->sse_connect('/events/rst', rcvbuf => 4096) } 1 .. 30;
    ok($srv->wait_stat(subscribers => 31, 5), 'a fast reader and 30 that will reset');
    my $slow0 = $srv->stat('slow_closed');
    my (@ids, @got);
    # 150 x 1.5 kB: output piles up for those that do not read, but stays
    # under sse_max_pending (256k): they leave by their resets only
    for my $i (1 .. 150) {
        my $r = $srv->publish('/pub/rst', sprintf('%04d ', $i) . ('r' x 1500));
        push @ids, $r->{json}{id} // "failed $r->{status}";
        # three of them read a little, then reset, every 15 events
        if ($i % 15 == 0) {
            for my $v (splice @victims, 0, 3) {
                $v->trickle(1000, 0);
                $v->abort;
            }
        }
        push @got, $fast->read_events(timeout => 0);
    }
    push @got, $fast->read_events(count => 150 - @got, timeout => 10);
    is_deeply([map { $_->{id} } @got], \@ids, 'the fast reader got all 150 events in order');
    ok($srv->wait_stat(subscribers => 1, 5), 'every reset client is gone from the hub');
    is($srv->stat('slow_closed'), $slow0, '... by its reset (none was closed as slow)');
    $fast->close;
}
still_serving($srv, 'the resets mid-write');

# ======================================================================
# more than 1,000 resets at once while publishing (4 processes x 300)

{
    my ($KIDS, $PER) = (4, 300);
    my @kids;
    for my $k (1 .. $KIDS) {
        pipe(my $ready_r, my $ready_w) or die;
        pipe(my $go_r, my $go_w) or die;
        my $pid = fork() // die "fork: $!";
        if (!$pid) {
            close $ready_r;
            close $go_w;
            my @socks;
            for (1 .. $PER) {
                my $s = IO::Socket::INET->new(Proto => 'tcp') or next;
                setsockopt($s, SOL_SOCKET, SO_RCVBUF, pack('i', 4096));
                $s->connect(Socket::pack_sockaddr_in($srv->port, Socket::inet_aton('127.0.0.1'))) or next;
                syswrite($s, "GET /events/storm HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
                push @socks, $s;
            }
            my $ok = 0;
            for my $s (@socks) {
                my $sel = IO::Select->new($s);
                my $buf = '';
                my $end = time() + 20;
                while ($buf !~ /\r\n\r\n/ && time() < $end) {
                    last unless $sel->can_read($end - time());
                    last unless sysread($s, $buf, 4096, length $buf);
                }
                $ok++ if $buf =~ m{\AHTTP/1\.1 200 };
            }
            syswrite($ready_w, "$ok\n");
            sysread($go_r, my $go, 1);
            setsockopt($_, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0)) for @socks;
            close $_ for @socks;
            syswrite($ready_w, "done\n");
            POSIX::_exit(0);
        }
        close $ready_w;
        close $go_r;
        push @kids, { pid => $pid, ready => $ready_r, go => $go_w };
    }
    my $opened = 0;
    for my $k (@kids) {
        my $line = readline($k->{ready}) // 0;
        $opened += $line;
    }
    is($opened, $KIDS * $PER, ($KIDS * $PER) . ' streams opened by 4 processes');
    my $fast = $srv->sse_connect('/events/storm');
    ok($srv->wait_stat(subscribers => $KIDS * $PER + 1, 20), '... all subscribed, and one fast reader');
    my $slow0 = $srv->stat('slow_closed');

    my (@ids, @got);
    my $t0 = time();
    # publish all along: before the resets, while they happen, after
    my $sel = IO::Select->new(map { $_->{ready} } @kids);
    my ($i, $done, $done_at) = (0, 0, 0);
    while (($i < 200 || $done < $KIDS || $i < $done_at + 40) && $i < 3000) {
        $i++;
        my $r = $srv->publish('/pub/storm', sprintf('%04d ', $i) . ('x' x 1000));
        push @ids, $r->{json}{id} // "failed $r->{status}";
        if ($i == 40) {
            syswrite($_->{go}, 'g') for @kids;        # every process resets all it has, at once
        }
        for my $fh ($sel->can_read(0)) {
            $sel->remove($fh);
            readline($fh);
            $done_at = $i if ++$done == $KIDS;
        }
        push @got, $fast->read_events(timeout => 0);
    }
    is($done, $KIDS, "the $KIDS processes reset their streams while events were being published");
    push @got, $fast->read_events(count => scalar(@ids) - @got, timeout => 10);
    waitpid($_->{pid}, 0) for @kids;
    is_deeply([map { $_->{id} } @got], \@ids, 'the fast reader got all ' . scalar(@ids) . ' events published through the storm');
    ok($srv->wait_stat(subscribers => 1, 20), ($KIDS * $PER) . ' reset streams are all gone from the hub')
        or diag('subscribers: ' . $srv->stat('subscribers'));
    is($srv->stat('slow_closed'), $slow0, '... by their resets (none was closed as slow)');
    diag(sprintf '%d publishes through %d resets in %.1fs (the resets done after publish %d)',
                 scalar @ids, $KIDS * $PER, time() - $t0, $done_at);
    $fast->close;
}
still_serving($srv, 'the reset storm');

# ======================================================================
# half-closed clients (shutdown of the write side): as nginx does for any
# request, a FIN is the client going away: the stream ends and its place
# in the hub is freed at once (README, "Behaviour where the spec is silent")

{
    # after the stream started
    my $s = $srv->sse_connect('/events/half');
    is($s->status, 200, 'a stream that will half-close');
    $s->wait_for(qr/retry: \d+\n\n/, 3);
    # and one that half-closes right after its request, before any answer
    my $raw = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->port, Proto => 'tcp');
    syswrite($raw, "GET /events/half HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n");
    shutdown($raw, SHUT_WR);
    ok($srv->wait_stat(subscribers => 1, 5), 'the stream that has not half-closed yet is one subscriber');
    shutdown($s->{sock}, SHUT_WR);
    ok($srv->wait_stat(subscribers => 0, 5), 'a half-closed client is gone from the hub at once');
    ok($s->is_closed(3), 'nginx ended the half-closed stream');
    my $r = $srv->publish('/pub/half', 'nobody');
    is($r->{json}{subscribers}, 0, 'a publish afterwards finds no subscriber on the channel');
    $s->close;
    close $raw;
}
still_serving($srv, 'the half-closed clients');

# ======================================================================
# a pipelined request behind the stream request

{
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $srv->port, Proto => 'tcp');
    syswrite($sock, "GET /events/pipe HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
                  . "POST /pub/pipe HTTP/1.1\r\nHost: localhost\r\nContent-Length: 9\r\n\r\npipelined"
                  . "GET /status HTTP/1.1\r\nHost: localhost\r\n\r\n");
    my $buf = '';
    my $sel = IO::Select->new($sock);
    my $read = sub {
        my ($re, $secs) = @_;
        my $end = time() + $secs;
        while ($buf !~ $re && time() < $end) {
            last unless $sel->can_read($end - time());
            last unless sysread($sock, $buf, 65536, length $buf);
        }
    };
    $read->(qr/retry: \d+\n\n\r\n/, 3);
    like($buf, qr{\AHTTP/1\.1 200 }, 'a stream request with two more pipelined behind it: 200');
    sleep 0.3;
    # more garbage on the same connection, a lot of it
    syswrite($sock, 'x' x 65536) for 1 .. 4;
    my $r = $srv->publish('/pub/pipe', 'live');
    $read->(qr/data: live\n\n\r\n/, 3);
    my ($head, $body) = split /\r\n\r\n/, $buf, 2;
    my ($de, $done) = SSETest::_dechunk($body // '');
    like($de, qr/\Aretry: \d+\n\nid: \S+\ndata: live\n\n\z/,
         'the stream carries exactly its own events: no pipelined answer, not the pipelined publish');
    ok(!$done && $body !~ m{HTTP/1\.1}, '... well-formed chunks, the stream still open');
    my $g = $srv->http('GET', '/pub/pipe');
    is($g->{json}{events}, 1, 'the pipelined POST published nothing (one event kept: the live one)');
    close $sock;
}
still_serving($srv, 'the pipelined requests');

# ======================================================================
# HTTP/2: streams reset mid-flight

{
    my $o = h2($h2, op => 'open_many', session => 'a', prefix => 'mf', n => 20, path => '/events/h2rst');
    is(join(',', @{ $o->{statuses} || [] }), join(',', (200) x 20), 'HTTP/2: 20 streams on one connection');
    ok($srv->wait_stat(subscribers => 20, 5), '... subscribed');
    my @ids;
    for my $i (1 .. 120) {
        my $r = $srv->publish('/pub/h2rst', sprintf('%04d ', $i) . ('h' x 1500));
        push @ids, $r->{json}{id} // "failed $r->{status}";
        if ($i == 40) {
            h2($h2, op => 'reset', sid => "mf$_", code => 8) for 0 .. 9;    # CANCEL, mid-flight
        }
    }
    ok($srv->wait_stat(subscribers => 10, 5), 'HTTP/2: the 10 reset streams left the hub');
    my @bad;
    for my $k (10 .. 19) {
        my $d = h2($h2, op => 'read', sid => "mf$k", until_b64 => encode_base64('0120 ', ''), timeout => 10000);
        my @got = ($d->{data} // '') =~ /^id: (\S+)$/mg;
        push @bad, "stream $k: " . scalar(@got) . ' events' unless "@got" eq "@ids";
    }
    is("@bad", '', 'HTTP/2: the 10 other streams got all 120 events in order');
    h2($h2, op => 'reset_prefix', prefix => 'mf');
    ok($srv->wait_stat(subscribers => 0, 5), 'HTTP/2: all gone after reset');
}

# ======================================================================
# HTTP/2: 100 streams opened and reset at once, three times, while publishing

{
    my $ok = 1;
    for my $round (1 .. 3) {
        my $o = h2($h2, op => 'open_many', session => 'a', prefix => "h$round-", n => 100, path => '/events/h2many');
        $ok &&= (join(',', @{ $o->{statuses} || [] }) eq join(',', (200) x 100));
        $ok &&= $srv->wait_stat(subscribers => 100, 5);
        $srv->publish('/pub/h2many', "round $round " . ('m' x 3000)) for 1 .. 5;
        h2($h2, op => 'reset_prefix', prefix => "h$round-", code => 8);
        $ok &&= $srv->wait_stat(subscribers => 0, 5);
    }
    ok($ok, 'HTTP/2: 100 streams opened, published to and reset at once, three times; the hub forgets them each time');
}
still_serving($srv, 'the HTTP/2 resets');

# ======================================================================
# HTTP/2: huge headers

{
    my @cases = (
        ['a 100 KB header', { 'x-huge' => 'h' x 100_000 }],
        ['3,000 headers', { map { ("x-h$_" => "v$_") } 1 .. 3000 }],
        ['a 64 KB cookie', { cookie => join('; ', map { "c$_=" . ('k' x 60) } 1 .. 1000) }],
    );
    for my $c (@cases) {
        h2($h2, op => 'connect', session => 'big', port => $h2port);
        my $r = h2($h2, op => 'request', session => 'big', path => '/events/huge', headers => $c->[1], timeout => 3000);
        ok(!$r->{timeout} && ($r->{status} // 0) != 200,
           "HTTP/2 $c->[0]: refused (" . ($r->{status} ? "status $r->{status}" : "reset $r->{rst}") . '), not a stream');
        h2($h2, op => 'close', session => 'big');
    }
    is($srv->stat('subscribers'), 0, 'HTTP/2 huge headers: nothing subscribed');

    # a 100 KB Last-Event-ID (HPACK packs it small): refused by nginx, or
    # it reaches the module as a malformed id: a live-only stream
    $srv->publish('/pub/huge', "kept $_") for 1 .. 2;
    h2($h2, op => 'connect', session => 'big', port => $h2port);
    my $o = h2($h2, op => 'open', session => 'big', sid => 'big1', path => '/events/huge',
               headers => { 'last-event-id' => '1' x 100_000 });
    if (($o->{status} // 0) == 200) {
        $srv->publish('/pub/huge', 'live');
        my $d = h2($h2, op => 'read', sid => 'big1', until_b64 => encode_base64("data: live\n\n", ''));
        is(join(',', ($d->{data} // '') =~ /^data: (.*)$/mg), 'live',
           'HTTP/2 a 100 KB Last-Event-ID: a malformed id, so a live-only 200 stream');
    } else {
        ok($o->{closed} || ($o->{status} // 0) >= 400,
           "HTTP/2 a 100 KB Last-Event-ID: refused ($o->{status})");
    }
    h2($h2, op => 'close', session => 'big');
    my $r = h2($h2, op => 'request', session => 'a', path => '/status');
    is($r->{status}, 200, 'HTTP/2: the first session still works');
}
still_serving($srv, 'the huge headers');

# ======================================================================
# HTTP/2: a zero window, never opened (the client never reads)

{
    ok(h2($h2, op => 'connect', session => 'zero', port => $h2port, settings => { initialWindowSize => 0 })->{ok},
       'HTTP/2 session with SETTINGS_INITIAL_WINDOW_SIZE 0');
    my $z = h2($h2, op => 'open', session => 'zero', sid => 'z1', path => '/slow/h2zero');
    is($z->{status}, 200, '... its stream opens (headers are not flow-controlled)');
    my $f = h2($h2, op => 'open', session => 'a', sid => 'zf', path => '/events/h2zero');
    is($f->{status}, 200, '... and a normal HTTP/2 reader of the same channel (sse_max_pending 256k)');
    ok($srv->wait_stat(subscribers => 2, 5), '... both subscribed');
    my $slow0 = $srv->stat('slow_closed');
    my @ids = map { $srv->publish('/pub/h2zero', sprintf('%04d ', $_) . ('z' x 4000))->{json}{id} } 1 .. 60;
    ok($srv->wait_stat(subscribers => 1, 10), 'the zero-window stream is closed (60 x 4 kB > sse_max_pending 64k)');
    is($srv->stat('slow_closed') - $slow0, 1, '... and counted in slow_closed');
    my $d = h2($h2, op => 'read', sid => 'z1', timeout => 200);
    ok($d->{closed}, '... the client sees its stream end (' . ($d->{rst} ? "RST_STREAM $d->{rst}" : 'END_STREAM') . ')');
    $d = h2($h2, op => 'read', sid => 'zf', until_b64 => encode_base64('0060 ', ''), timeout => 10000);
    is(join(' ', ($d->{data} // '') =~ /^id: (\S+)$/mg), "@ids", '... the normal reader got all 60 events');
    h2($h2, op => 'reset', sid => 'zf');
    h2($h2, op => 'close', session => 'zero');
}

# a WINDOW_UPDATE of 0 on an open stream: a protocol error
{
    my $w = h2($h2, op => 'raw_zero_window_update', port => $h2port, path => '/events/h2wu');
    ok($w->{opened}, 'raw HTTP/2: a stream opens');
    ok(scalar(grep { ($_->{name} // '') =~ /^(RST_STREAM|GOAWAY)$/ && $_->{code} == 1 } @{ $w->{frames} || [] }),
       'raw HTTP/2: a WINDOW_UPDATE of 0 is answered with PROTOCOL_ERROR')
        or diag(json_encode($w->{frames}));
    ok($srv->wait_stat(subscribers => 0, 5), 'raw HTTP/2: the stream is gone from the hub');
}
still_serving($srv, 'the HTTP/2 windows');

# ======================================================================
# HTTP/2 over TLS

{
    my $c = h2($h2, op => 'connect', session => 'tls', port => $tlsport, tls => 1);
    ok($c->{ok} && ($c->{alpn} // '') eq 'h2', 'HTTP/2 over TLS (ALPN h2)');
    my $o = h2($h2, op => 'open', session => 'tls', sid => 't1', path => '/events/tls');
    is($o->{status}, 200, 'HTTPS HTTP/2: stream');
    my $r = $srv->publish('/pub/tls', 'over tls');
    my $d = h2($h2, op => 'read', sid => 't1', until_b64 => encode_base64("data: over tls\n\n", ''));
    like($d->{data} // '', qr/id: \Q$r->{json}{id}\E\ndata: over tls\n\n/, 'HTTPS HTTP/2: the event arrives');
    my $ok = 1;
    for my $round (1 .. 2) {
        my $m = h2($h2, op => 'open_many', session => 'tls', prefix => "t$round-", n => 100, path => '/events/tls');
        $ok &&= (join(',', @{ $m->{statuses} || [] }) eq join(',', (200) x 100));
        $ok &&= $srv->wait_stat(subscribers => 101, 5);
        $srv->publish('/pub/tls', "tls round $round " . ('t' x 3000)) for 1 .. 5;
        h2($h2, op => 'reset_prefix', prefix => "t$round-", code => 8);
        $ok &&= $srv->wait_stat(subscribers => 1, 5);
    }
    ok($ok, 'HTTPS HTTP/2: 100 streams opened and reset at once while publishing, twice');
    $r = $srv->publish('/pub/tls', 'after');
    $d = h2($h2, op => 'read', sid => 't1', until_b64 => encode_base64("data: after\n\n", ''));
    my @data = ($d->{data} // '') =~ /^data: (.*)$/mg;
    is(scalar(@data), 11, 'HTTPS HTTP/2: the first stream got the 10 round events and the last one')
        or diag("@data[0 .. ($#data > 12 ? 12 : $#data)]");
    h2($h2, op => 'reset', sid => 't1');
    h2($h2, op => 'close', session => 'tls');
    ok($srv->wait_stat(subscribers => 0, 5), 'HTTPS HTTP/2: all gone');
}
still_serving($srv, 'the HTTPS HTTP/2 cases');

is(h2($h2, op => 'session_state', session => 'a')->{closed}, JSONBool::FALSE(),
   'the first HTTP/2 session survived all of it');
h2_end($h2);
is_deeply([$srv->worker_pids], \@workers, 'the same workers as at the start (none crashed)');
$srv->stop;
done_testing;

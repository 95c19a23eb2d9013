#!/usr/bin/perl
# sse_max_pending for streams that keep their request and write through
# nginx's filters: HTTP/2 (plain and gzip) and HTTP/1.1 with gzip.  Each
# never reads; a flood of events must close each one as too slow and count
# it in slow_closed, while a subscriber that reads gets every event.  (Plain
# HTTP/1.x streams are t/17-slow.t.)
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use IPC::Open2 qw(open2);
use IO::Select;
use Time::HiRes qw(time sleep);

my $node = $ENV{NODE_BIN} || 'node';
ok(system("$node --version >/dev/null 2>&1") == 0, "node is installed ($node)")
    or BAIL_OUT('install nodejs (make deps)');

my $h2port = SSETest::_free_port();
my $srv = start_nginx(
    workers      => 1,
    listen_opts  => 'sndbuf=4096',
    http         => "sse_history 1000;\nsse_heartbeat off;\nclient_max_body_size 1m;\n",
    server_extra => <<"EOS",
        listen 127.0.0.1:$h2port http2 sndbuf=4096;
        location ~ ^/slow/(.+)\$ { sse_stream \$1; sse_max_pending 64k; }
        location ~ ^/gz/(.+)\$ {
            gzip on;
            gzip_types text/event-stream;
            gzip_min_length 1;
            sse_stream \$1;
            sse_max_pending 64k;
        }
EOS
);

my $NODE_TIMEOUT = 20_000 * $SSETest::SCALE;

sub h2_client {
    my ($path, $gzip) = @_;
    my ($out, $in);
    my $pid = open2($out, $in, $node, "$FindBin::Bin/js/h2-stream.mjs",
                    $h2port, $path, $gzip, $NODE_TIMEOUT);
    close $in;
    return { pid => $pid, out => $out };
}

sub line_of {
    my ($c, $secs) = @_;
    my $sel = IO::Select->new($c->{out});
    return undef unless $sel->can_read($secs);
    my $l = readline($c->{out});
    return defined $l ? (eval { json_decode($l) } // { type => 'bad', line => $l }) : undef;
}

sub ids_of { map { $_->{id} // 'undef' } @_ }

is($srv->stat('slow_closed'), 0, 'slow_closed is 0 at the start');

my $reader = $srv->sse_connect('/events/fl');
is($reader->status, 200, 'a subscriber that reads');

my %h2 = ('HTTP/2' => h2_client('/slow/fl', 0), 'HTTP/2 gzip' => h2_client('/gz/fl', 1));
for my $name (sort keys %h2) {
    my $r = line_of($h2{$name}, 10);
    is($r && $r->{status}, 200, "$name: the stream opens (200)");
    is($r && $r->{encoding}, ($name =~ /gzip/ ? 'gzip' : undef),
       "$name: " . ($name =~ /gzip/ ? 'gzipped' : 'not gzipped'));
}
my $gz = $srv->sse_connect('/gz/fl', rcvbuf => 4096,
                           headers => { 'Accept-Encoding' => 'gzip' });
is($gz->status, 200, 'HTTP/1.1 gzip: the stream opens (small receive buffer, never read)');
is($gz->header('content-encoding'), 'gzip', 'HTTP/1.1 gzip: gzipped');
ok($srv->wait_stat(subscribers => 4, 5), 'status: 4 subscribers');

# 400 x 3 kB of letters that gzip cannot shrink much: far more than the
# HTTP/2 window, the socket buffers, gzip's buffers and 64k together
my $N = 400;
my (@ids, @got);
srand(61);
for my $i (1 .. $N) {
    my $d = sprintf('%04d ', $i) . join('', map { chr(97 + int(rand(26))) } 1 .. 3000);
    my $r = $srv->publish('/pub/fl', $d);
    is($r->{status}, 201, "publish $i") unless $r->{status} == 201;
    push @ids, $r->{json}{id};
    push @got, $reader->read_events(timeout => 0);
}
push @got, $reader->read_events(count => $N - @got, timeout => 10);
is_deeply([ids_of(@got)], \@ids, "the reading subscriber got all $N events, in order, once");

ok($srv->wait_stat(slow_closed => 3, 10 * $SSETest::SCALE),
   'slow_closed: the 3 streams that never read were closed as too slow')
    or diag('slow_closed ' . $srv->stat('slow_closed') . ', subscribers ' . $srv->stat('subscribers'));
ok($srv->wait_stat(subscribers => 1, 5), 'status: only the reader is left');

for my $name (sort keys %h2) {
    my $r = line_of($h2{$name}, $NODE_TIMEOUT / 1000 + 5);
    is($r && $r->{type}, 'closed', "$name: the server closed the stream")
        or diag(json_encode($r));
    waitpid($h2{$name}{pid}, 0);
}

# the gzip stream: what it was sent is a gapless prefix, then the close
ok($gz->is_closed(10), 'HTTP/1.1 gzip: the connection is closed once drained');
ok(!$gz->ended_cleanly, 'HTTP/1.1 gzip: without the last chunk (closed, not ended)');
my @gids = ids_of($gz->read_events(timeout => 0));
ok(@gids < $N, 'HTTP/1.1 gzip: it did not get everything (' . scalar(@gids) . ' events)');
is_deeply(\@gids, [@ids[0 .. $#gids]], 'HTTP/1.1 gzip: what it got is a prefix: no gap, no skip');

# they resume from history
my $re = $srv->sse_connect('/gz/fl', headers => { 'Accept-Encoding' => 'gzip',
                                                  'Last-Event-ID' => $gids[-1] // '0-0' });
my @rest = $re->read_events(count => $N - @gids, timeout => 10);
push @rest, $re->read_events(timeout => 0.3);
is_deeply([ids_of(@rest)], [@ids[scalar(@gids) .. $N - 1]],
          'a gzip stream resuming (and reading) gets exactly the rest');
is($srv->stat('slow_closed'), 3, 'slow_closed stays 3');

$_->close for $reader, $gz, $re;
ok($srv->wait_stat(subscribers => 0, 5), 'all gone');
$srv->stop;
done_testing;

#!/usr/bin/perl
# send_timeout applies to streams as nginx applies it to any response: a
# subscriber that accepts nothing of what it owes for send_timeout is
# closed (heartbeats queued meanwhile do not keep it open), while one that
# reads slowly but steadily keeps its stream however long the backlog takes.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(
    workers => 1,
    listen_opts => 'sndbuf=4096',
    http => <<'EOH',
send_timeout 1s;
sse_heartbeat 300ms;
sse_max_pending 8m;
sse_history 1000;
EOH
    server_extra => <<'EOS',
        location ~ ^/gz/(.+)$ {
            gzip on;
            gzip_types text/event-stream;
            gzip_min_length 1;
            sse_stream $1;
        }
EOS
);

my $stuck = $srv->sse_connect('/events/stuck', rcvbuf => 4096);
my $slow  = $srv->sse_connect('/events/steady', rcvbuf => 4096);
my $idle  = $srv->sse_connect('/events/idle', rcvbuf => 4096);
# gzip keeps the stream a request, written through nginx's filters
my $gz    = $srv->sse_connect('/gz/stuckgz', rcvbuf => 4096,
                              headers => { 'Accept-Encoding' => 'gzip' });
is($_->status, 200, 'stream opens') for $stuck, $slow, $idle, $gz;
is($gz->header('content-encoding'), 'gzip', 'the gzip stream is gzipped');
ok($srv->wait_stat(subscribers => 4, 5), 'status: 4 subscribers');
my $slow0 = $srv->stat('slow_closed');
is($slow0, 0, 'slow_closed is 0 at the start');
my $mark = $srv->log_mark;

# 100 x 3 kB on each channel: far more than the socket buffers hold
my $N = 100;
my $ok = 0;
for my $i (1 .. $N) {
    for my $ch ('stuck', 'steady') {
        my $r = $srv->publish("/pub/$ch", sprintf('%04d ', $i) . ('t' x 3000));
        $ok++ if $r->{status} == 201;
    }
    # letters that gzip cannot shrink much
    my $r = $srv->publish('/pub/stuckgz',
                          join('', map { chr(97 + int(rand(26))) } 1 .. 3000));
    $ok++ if $r->{status} == 201;
}
is($ok, 3 * $N, "$N events published on each channel");

# the steady reader takes what its small receive buffer holds (8 kB at
# most) about every 0.1 s: several seconds for the backlog,
# never a second without progress
my @got;
my $t0 = time();
my $stuck_gone;
while (@got < $N && time() - $t0 < 30) {
    $slow->trickle(16384, 0.1);
    push @got, $slow->take_parsed;
    $stuck_gone //= time() - $t0 if $srv->stat('subscribers') <= 2;
    sleep 0.1;
}
my $took = time() - $t0;
$stuck_gone //= time() - $t0 if $srv->wait_stat(subscribers => 2, 3 * $SSETest::SCALE);

is(scalar @got, $N, "the steady reader got all $N events")
    or diag(sprintf('%d events in %.1f s', scalar @got, $took));
ok($took > 2, sprintf('its backlog took longer than send_timeout (%.1f s)', $took));
is(join(',', map { $_->{data} =~ /^(\d{4}) / ? $1 + 0 : 'bad' } @got),
   join(',', 1 .. $N), 'in order, once each');
ok(!$slow->is_closed, 'the steady reader is still subscribed');

ok(defined $stuck_gone, 'the subscribers that read nothing (plain and gzip) were closed')
    or diag('subscribers: ' . $srv->stat('subscribers'));
ok(defined $stuck_gone && $stuck_gone < 3 * $SSETest::SCALE,
   sprintf('within about send_timeout (%.1f s)', $stuck_gone // -1));
my @timed_out = $srv->error_log_since($mark) =~ /client timed out/g;
is(scalar @timed_out, 2, 'error.log says each client timed out');
is($srv->stat('slow_closed'), $slow0, 'it is not counted as slow (sse_max_pending)');

# a stream that owes nothing is not timed out, whatever its idle time
ok(!$idle->is_closed, 'the idle subscriber that owes nothing is still open');
my @hb = $idle->read_events(timeout => 0.5);
ok(scalar(grep { /heartbeat/ } $idle->comments), 'and it gets its heartbeats');

is($srv->stat('subscribers'), 2, 'status: 2 subscribers left');
$_->close for $slow, $idle, $stuck, $gz;
ok($srv->wait_stat(subscribers => 0, 5), 'all gone');
$srv->stop;
done_testing;

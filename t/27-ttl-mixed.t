#!/usr/bin/perl
# Channels with different sse_history_ttl: an event kept for an hour does
# not hold back the expiry of the events published after it on channels
# kept for a second; their memory goes back to the zone.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(workers => 2, server => <<'EOS');
        location ~ ^/long/(.+)$  { sse_publish $1; sse_history_ttl 1h; }
        location ~ ^/short/(.+)$ { sse_publish $1; sse_history_ttl 1s; }
        location ~ ^/forever/(.+)$ { sse_publish $1; sse_history_ttl 0; }
        location ~ ^/events/(.+)$ { sse_stream $1; }
        location = /status { sse_status; }
EOS

my $used0 = $srv->stat('zone_bytes_used');
is($srv->publish('/forever/ever', 'no age limit')->{status}, 201,
   'one event on a channel with sse_history_ttl 0');
my $long = $srv->publish('/long/keep', 'kept for an hour');
is($long->{status}, 201, 'one event on a channel kept 1h');
my $ok = 0;
$ok += $srv->publish("/short/s$_", 'x' x 10_000)->{status} == 201 for 1 .. 50;
is($ok, 50, '50 events of 10 kB on channels kept 1s, after it');
is($srv->stat('events_kept'), 52, '52 events kept');
my $used1 = $srv->stat('zone_bytes_used');
ok($used1 > $used0 + 50 * 10_000, 'they take their room in the zone');

ok(SSETest::wait_until(sub { $srv->stat('events_kept') == 2 }, 5 * $SSETest::SCALE),
   'within seconds only the 1h event and the one with no age limit are kept')
    or diag('events_kept: ' . $srv->stat('events_kept'));
is($srv->stat('history_evicted'), 50, 'history_evicted: the 50 expired events');
ok($srv->stat('zone_bytes_used') < $used1 - 50 * 10_000,
   'the expired events gave their room back');
is($srv->http('GET', '/long/keep')->{json}{events}, 1, 'the 1h channel still keeps its event');
is($srv->http('GET', '/forever/ever')->{json}{events}, 1, 'so does the channel with no age limit');

my $s = $srv->sse_connect('/events/keep', headers => { 'Last-Event-ID' => '1-1' });
my @ev = $s->read_events(count => 1, timeout => 5);
is($ev[0] && $ev[0]{data}, 'kept for an hour', 'and replays it');
$s->close;
$srv->stop;
done_testing;

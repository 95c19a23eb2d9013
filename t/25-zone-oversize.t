#!/usr/bin/perl
# A publish that can never fit in the zone (one event, or a batch, larger
# than the whole zone) is refused with 507 at once: it does not first evict
# the history of every other channel trying to make room.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(
    workers => 1,
    http => "sse_zone small:1m;\nclient_max_body_size 8m;\nsse_max_message_size 4m;\n",
);

for my $c (qw(a b c)) {
    my $ok = 0;
    $ok += $srv->publish("/pub/$c", "keep $c $_")->{status} == 201 for 1 .. 5;
    is($ok, 5, "5 events on channel $c");
}
is($srv->stat('events_kept'), 15, '15 events kept');
my $used = $srv->stat('zone_bytes_used');

my $r = $srv->publish('/pub/other', 'X' x (2 * 1024 * 1024));
check_json_error($r, 507, 'one 2 MB event in a 1 MB zone');

my $batch = join '', map { "data: " . ('B' x 40_000) . "\n\n" } 1 .. 40;
$r = $srv->publish('/pub/other', $batch, content_type => 'text/event-stream');
check_json_error($r, 507, 'a batch of 40 x 40 kB in a 1 MB zone');

is($srv->stat('events_kept'), 15, 'the other channels keep their 15 events');
is($srv->stat('history_evicted'), 0, 'nothing was evicted');
is($srv->stat('zone_bytes_used'), $used, 'the zone holds what it held');
my $g = $srv->http('GET', '/pub/a');
is($g->{status}, 200, 'GET of channel a: 200');
is($g->{json} && $g->{json}{events}, 5, 'channel a keeps 5 events');
is($srv->http('GET', '/pub/other')->{status}, 404, 'nothing of the refused publishes exists');

# what fits once older history goes still gets in, at the cost of that history
my $s = $srv->sse_connect('/events/big');
$r = $srv->publish('/pub/big', 'Y' x (600 * 1024));
is($r->{status}, 201, 'a 600 kB event in the 1 MB zone: 201');
my @ev = $s->read_events(count => 1, timeout => 5);
is(length($ev[0] && $ev[0]{data} // ''), 600 * 1024, 'and it is delivered whole');

$srv->stop;

# nearly the zone's size: more than it can hold once its own structures
# are counted, so refused at once too
$srv = start_nginx(
    workers => 1,
    http => "sse_zone tiny:256k;\nclient_max_body_size 8m;\nsse_max_message_size 4m;\n",
);
my $ok = 0;
$ok += $srv->publish('/pub/keep', "$_ " . ('k' x 10_000))->{status} == 201 for 1 .. 10;
is($ok, 10, '10 events of 10 kB kept in a 256 kB zone');
$r = $srv->publish('/pub/other', 'Z' x 250_000);
check_json_error($r, 507, 'an event of 250,000 bytes in a 256 kB zone');
is($srv->stat('events_kept'), 10, 'the 10 events are still kept');
is($srv->stat('history_evicted'), 0, 'nothing was evicted');
$r = $srv->publish('/pub/other', 'W' x 150_000);
is($r->{status}, 201, 'an event of 150,000 bytes gets in, making room');
my $ev = $srv->stat('history_evicted');
ok($ev > 0 && $ev <= 10, "by evicting the oldest events of channel keep ($ev)");
is($srv->stat('events_kept'), 11 - $ev, "the rest is kept: 11 - $ev");
$srv->stop;
done_testing;

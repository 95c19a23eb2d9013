#!/usr/bin/perl
# A small zone: publishing more than fits drops the oldest history instead
# of failing; an event that cannot fit at all is a 507, stores nothing and
# delivers nothing; the hub keeps working.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(
    workers => 2,
    http => "sse_zone small:1m;\nsse_history 100;\nclient_max_body_size 8m;\nsse_max_message_size 4m;\n",
);

my $total = $srv->stat('zone_bytes_total');
is($total, 1024 * 1024, 'zone small:1m: zone_bytes_total 1048576');

sub ids_of { map { $_->{id} // 'undef' } @_ }

my $s = $srv->sse_connect('/events/zp');
is($s->status, 200, 'subscriber');

# 100 x 30 kB = 3 MB through a 1 MB zone
my (@ids, @bad);
for my $i (1 .. 100) {
    my $r = $srv->publish('/pub/zp', sprintf('%03d ', $i) . ('z' x 30_000));
    push @bad, "$i: $r->{status}" unless $r->{status} == 201;
    push @ids, $r->{json}{id};
}
is(scalar @bad, 0, '3 MB of events through a 1 MB zone: every publish 201 (oldest history dropped)')
    or diag(join ', ', @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
my @ev = $s->read_events(count => 100, timeout => 10);
is_deeply([ids_of(@ev)], \@ids, 'the live subscriber got all 100');
my $st = $srv->status;
ok($st->{events_kept} < 100 && $st->{events_kept} > 0, "some events are kept ($st->{events_kept})");
is($st->{history_evicted}, 100 - $st->{events_kept},
   "history_evicted counts every drop: $st->{history_evicted} + $st->{events_kept} kept = 100");
is($st->{events_published}, 100, 'events_published 100');
is($srv->http('GET', '/pub/zp')->{json}{events}, $st->{events_kept}, 'the channel keeps them all');
ok($st->{zone_bytes_used} <= $st->{zone_bytes_total}, 'used <= total');
{
    my $k = $st->{events_kept};
    my $r = $srv->sse_connect('/events/zp', headers => { 'Last-Event-ID' => '0-0' });
    my @rep = $r->read_events(count => $k, timeout => 5);
    push @rep, $r->read_events(timeout => 0.3);
    is_deeply([ids_of(@rep)], [@ids[100 - $k .. 99]], 'replay gives the newest kept events, in order');
    $r->close;
}

# many channels under pressure
{
    my @b;
    for my $i (1 .. 150) {
        my $r = $srv->publish("/pub/many$i", 'm' x 10_000);
        push @b, "$i: $r->{status}" unless $r->{status} == 201;
    }
    is(scalar @b, 0, '150 channels x 10 kB in a 1 MB zone: every publish 201')
        or diag(join ', ', @b[0 .. ($#b > 9 ? 9 : $#b)]);
    my $st = $srv->status;
    is($st->{events_published}, 250, 'events_published 250');
    is($st->{events_kept} + $st->{history_evicted}, 250,
       "every event is kept or counted as evicted ($st->{events_kept} + $st->{history_evicted})");
}

# an event larger than the whole zone: 507
{
    my $pub0 = $srv->stat('events_published');
    $s->take_raw;
    my $r = $srv->publish('/pub/zp', 'X' x (2 * 1024 * 1024));
    check_json_error($r, 507, 'a 2 MB event in a 1 MB zone');
    my @none = $s->read_events(timeout => 0.5);
    is(scalar @none, 0, '507: nothing delivered');
    is($s->take_raw, '', '507: no bytes on the stream');
    is($srv->stat('events_published'), $pub0, '507: nothing published');
    my $batch = $srv->publish('/pub/zp', "data: small\n\ndata: " . ('Y' x (2 * 1024 * 1024)) . "\n\n",
                              content_type => 'text/event-stream');
    check_json_error($batch, 507, 'a batch with one event too large for the zone');
    @none = $s->read_events(timeout => 0.5);
    is(scalar @none, 0, '507 batch: nothing delivered (all or nothing)');
    is($srv->stat('events_published'), $pub0, '507 batch: nothing published');
}

# still works
{
    my $r = $srv->publish('/pub/zp', 'after 507');
    is($r->{status}, 201, 'publish after a 507: 201');
    my @e = $s->read_events(count => 1, timeout => 3);
    is($e[0]{data} // '', 'after 507', 'delivered');
    my @subs = $srv->sse_connect_many(50, sub { "/events/zq$_[0]" });
    is(scalar(grep { $_->status == 200 } @subs), 50, 'new subscribers on new channels still get in');
    $_->close for @subs;
}

$s->close;
$srv->stop;
done_testing;

#!/usr/bin/perl
# Memory: rounds of 1000 subscribers that connect, get an event and leave.
# After a warm-up round, another round must leave the zone's used bytes
# exactly where they were and grow no worker's RSS by 1 MB or more.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $N = 1000;
my $srv = start_nginx(workers => 2, http => "sse_history 5;\n");

# fill memall's history up to its limit so that a round's event only
# replaces an event of the same size
my $payload = 'p' x 200;
$srv->publish('/pub/memall', $payload) for 1 .. 5;

sub round {
    my ($tag) = @_;
    my $t0 = time();
    my @s = $srv->sse_connect_many($N, sub { "/events/memall,mem-$tag-" . ($_[0] % 50) });
    my $open = grep { $_->status == 200 } @s;
    is($open, $N, "round $tag: $N subscribers open");
    my %w;
    $w{ $_->worker // '?' }++ for @s;
    ok(keys %w > 1, "round $tag: subscribers on more than one worker") or diag(join ' ', %w);
    ok($srv->wait_stat(subscribers => $N, 10), "round $tag: status counts $N");
    is($srv->stat('channels'), 51, "round $tag: 51 channels");
    my $r = $srv->publish('/pub/memall', $payload);
    is($r->{json}{subscribers}, $N, "round $tag: event published to $N");
    my $got = 0;
    for my $s (@s) {
        my @ev = $s->read_events(count => 1, timeout => 5);
        $got++ if @ev == 1 && $ev[0]{id} eq $r->{json}{id};
    }
    is($got, $N, "round $tag: every subscriber got the event");
    # half leave with FIN, half with RST
    my $i = 0;
    for my $s (@s) { $i++ % 2 ? $s->close : $s->abort }
    ok($srv->wait_stat(subscribers => 0, 10), "round $tag: all subscribers gone");
    ok(wait_until(sub { $srv->stat('channels') == 1 }, 10), "round $tag: only memall is left");
    diag(sprintf "round $tag took %.1fs", time() - $t0);
}

sub rss {
    my %r;
    $r{$_} = $srv->rss_kb($_) for $srv->worker_pids;
    return \%r;
}

round('warm');
sleep 0.5;
my $zone0 = $srv->stat('zone_bytes_used');
my $rss0 = rss();
ok($zone0 > 0, "baseline zone_bytes_used $zone0");
diag('baseline RSS (kB): ' . join ', ', map { "$_=$rss0->{$_}" } sort keys %$rss0);

round('second');
sleep 0.5;
my $zone1 = $srv->stat('zone_bytes_used');
my $rss1 = rss();
is($zone1, $zone0, 'zone_bytes_used after another round equals the baseline');
is_deeply([sort keys %$rss1], [sort keys %$rss0], 'same workers');
for my $pid (sort keys %$rss0) {
    my $grow = ($rss1->{$pid} // 0) - $rss0->{$pid};
    ok($grow < 1024, "worker $pid RSS grew by less than 1 MB ($grow kB)");
}

# the history is intact and the hub still works
is($srv->http('GET', '/pub/memall')->{json}{events}, 5, 'memall still keeps 5 events');
{
    my $s = $srv->sse_connect('/events/memall');
    my $r = $srv->publish('/pub/memall', 'last');
    my @ev = $s->read_events(count => 1, timeout => 3);
    is($ev[0]{id} // '', $r->{json}{id}, 'the hub still delivers');
    $s->close;
}

$srv->stop;
done_testing;

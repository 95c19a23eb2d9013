#!/usr/bin/perl
# Event ids: <ms>-<seq>, unique and strictly increasing across the whole
# hub: all channels, all workers, sequential and concurrent publishers.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use POSIX ();
use Time::HiRes qw(time sleep);

my $srv = start_nginx(workers => 2, http => "sse_history 1000;\n");
my @channels = map { "c$_" } 0 .. 4;
my $all = join ',', @channels;

my $t_start = now_ms();
my $sub = $srv->sse_connect("/events/$all");
is($sub->status, 200, 'subscriber on 5 channels');
my $single = $srv->sse_connect('/events/c3');
is($single->status, 200, 'subscriber on c3 only');

# --- sequential publishes, each on its own connection
my (@ids, @chan, %workers);
my $n = 0;
while ($n < 100 || (keys %workers < 2 && $n < 400)) {
    my $ch = $channels[$n % 5];
    my $r = $srv->publish("/pub/$ch", "seq $n");
    is($r->{status}, 201, "publish $n") unless $r->{status} == 201;
    push @ids, $r->{json}{id};
    push @chan, $ch;
    $workers{ $r->{worker} // '?' }++;
    $n++;
}
ok(keys %workers > 1, 'publishes were handled by more than one worker')
    or diag('workers: ' . join ' ', %workers);
diag("sequential publishes: $n, by workers " . join(', ', map { "$_ x$workers{$_}" } sort keys %workers));
is(scalar(grep { defined $_ && /\A\d+-\d+\z/ } @ids), $n, 'every id has the form <ms>-<seq>');
ok(ids_strictly_increasing(@ids), 'ids strictly increasing in publish order, across channels and workers');
{
    my %seen;
    is(scalar(grep { !$seen{$_}++ } @ids), $n, 'ids unique');
    # nginx's clock is the one it cached at its last event loop turn: a
    # little behind the test's, never ahead
    my ($ms0) = parse_id($ids[0]);
    my ($ms) = parse_id($ids[-1]);
    ok($ms0 >= $t_start - 1000 && $ms <= now_ms(),
       'ms part is the current time in milliseconds (between the start of the test and now)')
        or diag("ids $ids[0] .. $ids[-1], test started at $t_start, now " . now_ms());
}

my @ev = $sub->read_events(count => $n, timeout => 10);
is(scalar @ev, $n, "multi-channel subscriber got all $n events");
is_deeply([map { $_->{id} } @ev], \@ids, 'in publish order with the published ids');
is_deeply([map { $_->{data} } @ev], [map { "seq $_" } 0 .. $n - 1], 'data matches');
my @c3 = grep { $chan[$_] eq 'c3' } 0 .. $n - 1;
my @ev3 = $single->read_events(count => scalar @c3, timeout => 5);
is_deeply([map { $_->{id} } @ev3], [@ids[@c3]], 'single-channel subscriber got exactly its channel');

# --- concurrent publishers in separate processes
my $per = 60;
my $kids = 4;
my @pipes;
for my $k (0 .. $kids - 1) {
    pipe(my $rd, my $wr) or die "pipe: $!";
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $rd;
        my $out = '';
        for my $i (0 .. $per - 1) {
            my $ch = $channels[($k + $i) % 5];
            my $r = SSETest::publish($srv, "/pub/$ch", "kid $k $i");
            $out .= join(' ', $r->{status}, $r->{json}{id} // '-', $r->{worker} // '-', $ch) . "\n";
        }
        print $wr $out;
        close $wr;
        POSIX::_exit(0);
    }
    close $wr;
    push @pipes, [$pid, $rd];
}
my (@cids, %cworkers, %by_kid);
for my $k (0 .. $#pipes) {
    my ($pid, $rd) = @{ $pipes[$k] };
    local $/;
    my $text = <$rd> // '';
    close $rd;
    waitpid $pid, 0;
    for my $l (split /\n/, $text) {
        my ($st, $id, $w) = split / /, $l;
        is($st, 201, "concurrent publish by kid $k") unless $st == 201;
        push @cids, $id;
        push @{ $by_kid{$k} }, $id;
        $cworkers{$w}++;
    }
}
is(scalar @cids, $per * $kids, 'all concurrent publishes answered');
{
    my %seen;
    is(scalar(grep { !$seen{$_}++ } @cids), scalar @cids, 'concurrent ids unique');
}
for my $k (sort keys %by_kid) {
    ok(ids_strictly_increasing(@{ $by_kid{$k} }), "kid $k: its own ids strictly increasing");
}
ok(keys %cworkers > 1, 'concurrent publishes hit more than one worker')
    or diag('workers: ' . join ' ', %cworkers);
ok(!grep({ id_cmp($_, $ids[-1]) <= 0 } @cids), 'concurrent ids all larger than earlier ones');

my @cev = $sub->read_events(count => scalar @cids, timeout => 10);
is(scalar @cev, scalar @cids, 'subscriber got every concurrent event');
my @got = map { $_->{id} } @cev;
ok(ids_strictly_increasing(@got), 'subscriber receives them in strictly increasing id order');
is_deeply([sort { id_cmp($a, $b) } @got], [sort { id_cmp($a, $b) } @cids],
          'exactly the published ids');
is(scalar($sub->read_events(timeout => 0.5)), 0, 'no duplicates afterwards');

$sub->close;
$single->close;
$srv->stop;
done_testing;

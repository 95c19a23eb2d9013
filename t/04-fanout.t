#!/usr/bin/perl
# Cross-worker delivery: 200 subscribers spread over 2 and then 4 workers,
# events published through connections that land on several workers; every
# subscriber gets every event exactly once, in order.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $SUBS   = 200;
my $EVENTS = 20;

for my $workers (2, 4) {
    my $srv = start_nginx(workers => $workers);
    my $tag = "w$workers";

    my @s = $srv->sse_connect_many($SUBS, "/events/fan");
    is(scalar(grep { $_->status == 200 } @s), $SUBS, "$tag: $SUBS subscribers open");
    my %w;
    $w{ $_->worker // '?' }++ for @s;
    ok(keys %w > 1, "$tag: subscribers landed on more than one worker")
        or diag(join ' ', %w);
    diag("$tag: subscribers per worker: " . join(', ', map { "$_=$w{$_}" } sort keys %w));

    ok($srv->wait_stat(subscribers => $SUBS, 5),
       "$tag: status counts $SUBS subscribers");

    my (@ids, @data, %pw);
    for my $i (1 .. $EVENTS) {
        my $d = "fan $workers event $i " . ('.' x $i);
        my $r = $srv->publish('/pub/fan', $d, ($i % 3 == 0 ? (type => 'tick') : ()));
        is($r->{status}, 201, "$tag: publish $i") unless $r->{status} == 201;
        is($r->{json}{subscribers}, $SUBS, "$tag: publish answer counts $SUBS subscribers")
            if $i == 1;
        push @ids, $r->{json}{id};
        push @data, $d;
        $pw{ $r->{worker} // '?' }++;
    }
    ok(keys %pw > 1, "$tag: events were published through more than one worker")
        or diag(join ' ', %pw);
    ok(ids_strictly_increasing(@ids), "$tag: published ids increasing");

    my $t0 = time();
    my ($complete, $exact, @bad) = (0, 0);
    for my $i (0 .. $#s) {
        my @ev = $s[$i]->read_events(count => $EVENTS, timeout => 10);
        $complete++ if @ev == $EVENTS;
        my $ok = @ev == $EVENTS
            && join(',', map { $_->{id} // '' } @ev) eq join(',', @ids)
            && join("\0", map { $_->{data} } @ev) eq join("\0", @data)
            && !grep({ ($_->{event} eq 'tick') != ($_->{data} =~ /event (\d+)/ && $1 % 3 == 0) } @ev);
        if ($ok) { $exact++ } else { push @bad, "sub $i (worker " . ($s[$i]->worker // '?') . "): " . scalar(@ev) . " events" }
    }
    is($complete, $SUBS, "$tag: every subscriber got $EVENTS events");
    is($exact, $SUBS, "$tag: every subscriber got exactly the published ids, data and types, in order")
        or diag(join "\n", @bad[0 .. ($#bad > 9 ? 9 : $#bad)]);
    diag(sprintf "$tag: all deliveries read in %.2fs", time() - $t0);

    sleep 0.5;
    my $extra = 0;
    $extra += scalar($_->read_events(timeout => 0)) for @s;
    is($extra, 0, "$tag: no duplicate or extra events");

    $_->close for @s;
    ok($srv->wait_stat(subscribers => 0, 5),
       "$tag: subscribers back to 0 after the clients left");
    $srv->stop;
}

done_testing;

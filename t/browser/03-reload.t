#!/usr/bin/perl
# nginx -s reload, twice, while a publisher keeps publishing: the demo page
# in Chromium sees its stream end each time, reconnects by itself (the page
# counts 2 reconnects), and its table ends up with every published event
# exactly once, in order, those published while it was away included (the
# browser's Last-Event-ID brings them back).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/../lib", "$FindBin::Bin/lib";
use SSETest;
use Browser;
use Example;
use POSIX qw(WNOHANG _exit);
use Time::HiRes qw(time sleep);

my @problems = Browser::problems();
ok(!@problems, 'Chromium, node and playwright-core are there') or do {
    diag($_) for @problems;
    done_testing;
    exit;
};

my $port = SSETest::_free_port();
my $ex = Example->demo($port);
my $srv = $ex->start;
my $br = Browser->start;
is($br->goto($srv->url('/')), 200, 'the demo page loads');
ok($br->wait(q{document.getElementById('state').textContent === 'open'}, 30), 'its stream is open');
ok($srv->wait_stat(subscribers => 1, 10), 'nginx counts it');

# the publisher: one event every 150 ms until $stop exists; prints
# "<id> <time>" for each (or "fail <status>")
my $stop = $ex->dir . '/stop-publishing';
pipe(my $from_pub, my $to_parent) or die "pipe: $!";
my $pub = fork // die "fork: $!";
if (!$pub) {
    close $from_pub;
    $to_parent->autoflush(1);
    my $n = 0;
    my $until = time() + 90;
    while (!-e $stop && time() < $until) {
        my $r = publish($srv, '/publish/news', 'event ' . ++$n);
        print $to_parent $r->{status} == 201 ? "$r->{json}{id} " . time() . "\n" : "fail $r->{status}\n";
        sleep 0.15;
    }
    close $to_parent;
    _exit(0);
}
close $to_parent;

my $reconnects = q{Number(document.getElementById('reconnects').textContent)};
my @gaps;
sleep 1.5;
for my $k (1, 2) {
    ok($srv->reload, "nginx -s reload $k");
    my $t0 = time();
    ok($br->wait("$reconnects >= $k", 40), "the page reconnected by itself ($k)")
        or diag('page: ' . ($br->eval(q{document.getElementById('hint').textContent}) // $br->error));
    push @gaps, [$t0, time()];
    sleep 1.5;
}
open my $fh, '>', $stop or die "$stop: $!";
close $fh;
my @lines = <$from_pub>;
waitpid($pub, 0);
my @fails = grep { /^fail/ } @lines;
is(scalar @fails, 0, 'every publish answered 201') or diag(join '', @fails);
my @published = map { [split ' '] } grep { !/^fail/ } @lines;
my @ids = map { $_->[0] } @published;
ok(@ids >= 20, scalar(@ids) . ' events published');
for my $k (0, 1) {
    my ($t_from, $t_to) = @{ $gaps[$k] };
    my $during = grep { $_->[1] > $t_from && $_->[1] < $t_to } @published;
    # the stream ends on reload and the browser waits (retry: 3000) before
    # it reconnects: what was published meanwhile comes back by Last-Event-ID
    ok($during > 0, "events were published while the page was away after reload " . ($k + 1)
                    . " ($during)");
}

my $rows_js = q{[...document.querySelectorAll('#events tr')].reverse().map(tr => tr.cells[0].textContent)};
ok($br->wait("document.querySelectorAll('#events tr').length >= " . scalar(@ids), 30),
   'the page shows as many events as were published')
    or diag('rows: ' . $br->eval(q{document.querySelectorAll('#events tr').length}));
sleep 1;     # a duplicate would come late
my $shown = $br->eval($rows_js) || [];
is_deeply($shown, \@ids, 'the page shows every event once, in order');
is($br->eval($reconnects), 2, 'the page counted 2 reconnects');
is($br->eval(q{document.getElementById('state').textContent}), 'open', 'and its stream is open');
is($br->eval(q{document.getElementById('last-id').textContent}), $ids[-1], 'it shows the last id');

$br->diag_log unless Test::More->builder->is_passing;
$br->quit;
$srv->stop;
done_testing;

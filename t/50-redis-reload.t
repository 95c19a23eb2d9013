#!/usr/bin/perl
# Redis mode and nginx -s reload: a publisher (a forked process) POSTs 300
# events alternately to nodes A and B while each node is reloaded twice;
# subscribers on both nodes behave as browsers (when a stream ends they
# reconnect to the same node with their Last-Event-ID) and must end up
# with every event of their channels once, in log order.  Then a reload
# while Redis is down: no crash, and the node is up again once Redis is.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);
use POSIX qw(WNOHANG);
use File::Temp qw(tempdir);

my $r = SSERedis->start;
my $http = "sse_history 2000;\nsse_heartbeat 1s;\n";
my $A = start_node(redis => $r, name => 'A', http => $http);
my $B = start_node(redis => $r, name => 'B', http => $http);
my %name = ($A => 'A', $B => 'B');

my @paths = ('/events/r0', '/events/r1', '/events/r0,r1');
my @subs = map { my $n = $_; map { SSERedis::Sub->new($n, $_) } @paths, @paths } $A, $B;
is(scalar(grep { $_->stream->status == 200 } @subs), 12, '6 subscribers on each node');

# ---------------------------------------------------------------- publishing through reloads
my $N = 300;
my $dir = tempdir('sse-reload-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $file = "$dir/published";
my $pid = fork // die "fork: $!";
if (!$pid) {
    close_inherited_fds();
    open my $fh, '>', $file or POSIX::_exit(1);
    $fh->autoflush(1);
    for my $i (0 .. $N - 1) {
        my ($n, $srv) = $i % 2 ? ('B', $B) : ('A', $A);
        my $ch = 'r' . (int($i / 2) % 2);
        my $res = $srv->publish("/pub/$ch", "reload $i", timeout => 10);
        print $fh join("\t", $i, $n, $ch, $res->{status}, $res->{json}{id} // '-',
                       ($res->{body} // '') =~ s/\s+/ /gr), "\n";
        sleep 0.01;
    }
    POSIX::_exit(0);
}
sub lines_done { my $t = SSETest::_slurp($file) // ''; return scalar(() = $t =~ /\n/g) }

my @plan = ([50, $A], [100, $B], [150, $A], [200, $B]);
my (@reloaded, $exited);
my $t0 = time();
while (!$exited && time() - $t0 < 120) {
    $exited = 1 if waitpid($pid, WNOHANG) == $pid;
    if (@plan && lines_done() >= $plan[0][0]) {
        my ($at, $srv) = @{ shift @plan };
        push @reloaded, [$name{$srv}, $at, $srv->reload];
    }
    $_->pump(0.01) for @subs;
}
ok($exited, sprintf('the publisher finished (%.1fs)', time() - $t0));
is(join(' ', map { "$_->[0]\@$_->[1]:" . ($_->[2] ? 'ok' : 'failed') } @reloaded),
   'A@50:ok B@100:ok A@150:ok B@200:ok', 'each node reloaded twice while the publisher ran');
ok($A->old_workers_gone(10) && $B->old_workers_gone(10), 'old workers exited');

my @lines = map { [split /\t/] } split /\n/, SSETest::_slurp($file) // '';
is(scalar @lines, $N, "$N POSTs made");
my @failed = grep { $_->[3] != 201 } @lines;
is(scalar @failed, 0, 'every POST made during the reloads answered 201')
    or diag(join "\n", map { "POST $_->[0] on $_->[1]: $_->[3] $_->[5]" } @failed[0 .. ($#failed > 9 ? 9 : $#failed)]);
my @pub = map { { id => $_->[4], channel => $_->[2], data => "reload $_->[0]" } } grep { $_->[3] == 201 } @lines;
ok(ids_strictly_increasing(map { $_->{id} } @pub), 'answered ids strictly increase');
my @log = $r->log_of('sse:log', 'r0', 'r1');
same_events([entries_as_events(@log)], [map { { id => $_->{id}, event => 'message', data => $_->{data} } } @pub],
            'the log holds each accepted POST once, in order');

my @bad;
for my $s (@subs) {
    my ($list) = $s->{path} =~ m{^/events/(.+)$};
    my %in = map { $_ => 1 } split /,/, $list;
    my @want = grep { $in{ $_->{channel} } } @pub;
    $s->pump_until(scalar @want, 20);
    $s->{want} = \@want;
}
sleep 1;
$_->pump(0) for @subs;
for my $s (@subs) {
    my @want = @{ $s->{want} };
    my @got = $s->events;
    my $g = join(',', map { ($_->{id} // '?') . '=' . $_->{data} } @got);
    my $w = join(',', map { "$_->{id}=$_->{data}" } @want);
    next if $g eq $w;
    my %n;
    $n{ $_->{id} // '?' }++ for @got;
    my $dups = grep { $_ > 1 } values %n;
    my %have = map { ($_->{id} // '?') => 1 } @got;
    my $lost = grep { !$have{ $_->{id} } } @want;
    push @bad, "$name{ $s->{srv} } $s->{path}: got " . @got . ', want ' . @want
        . ", $dups duplicated, $lost missing, " . $s->reconnects . ' reconnects';
}
is(scalar @bad, 0, 'every subscriber, reconnecting with Last-Event-ID after each reload, got every event once, in order')
    or diag(join "\n", @bad);
my @few = grep { $_->reconnects < 2 } @subs;
is(scalar @few, 0, 'every subscriber saw its stream end at both reloads of its node and reconnected')
    or diag(join "\n", map { "$name{ $_->{srv} } $_->{path}: " . $_->reconnects . ' reconnects' } @few);

# ---------------------------------------------------------------- reload while Redis is down
{
    my $last = $pub[-1]{id};
    my $s = SSERedis::Sub->new($A, '/events/r0', last_event_id => $last);
    ok($r->stop, 'redis-server stopped');
    ok(wait_redis($A, 'down', 5), 'A: "down"');
    ok($A->reload, 'A reloaded while Redis is down: new workers started');
    ok($A->old_workers_gone(10), 'the old workers exited');
    $s->pump(0.5) for 1 .. 4;
    is(redis_state($A), 'down', 'A: still "down" after the reload');
    ok($s->stream->status == 200 && !$s->stream->is_closed(0), 'A: the reconnected stream is open');
    is(scalar($s->events), 0, 'A: and has got nothing (nothing was published)');
    $r->start;
    ok(node_ready($A, 15), 'A: up again after Redis came back, every worker publishes');
    my $res = $A->publish('/pub/r0', 'after the reload without redis');
    is($res->{status}, 201, 'A: POST 201');
    ok($s->pump_until(1, 10), 'A: the stream gets it');
    is(join(',', map { ($_->{id} // '?') . '=' . $_->{data} } $s->events),
       ($res->{json}{id} // '-') . '=after the reload without redis', 'A: exactly that event, with its id');
    $s->close;
}

$_->close for @subs;
$A->stop;
$B->stop;
$r->stop;
done_testing;

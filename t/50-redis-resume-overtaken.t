#!/usr/bin/perl
# Redis mode: a stream that resumes on a node that has not yet read as far
# as its Last-Event-ID waits for the node (t/50-redis-resume-behind.t).
# When the node then catches up with more events than sse_history keeps,
# the events the stream was owed are gone before it is sent them: it must
# not be given what is left as if nothing were missing (a live stream never
# skips an event silently).  It ends cleanly, as any replay the history
# overtook, and the browser's reconnect with the same Last-Event-ID gets
# everything kept, as SPEC.md says of an id older than the history.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(sleep);

my $HISTORY = 3;
my $N = 10;
my $http = "sse_history $HISTORY;\n";

my $r = SSERedis->start;
my $P = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port);
my $A = start_node(redis => $r, name => 'A', http => $http);
my $B = start_node(url => $P->url, name => 'B', http => $http);

$P->cut;
ok(wait_redis($B, 'down', 10), 'B is cut off from Redis');

my @ids;
for my $i (1 .. $N) {
    my $res = $A->publish('/pub/news', "e$i");
    is($res->{status}, 201, "POST e$i on A while B is cut off");
    push @ids, $res->{json}{id};
}

# the browser had e1 from A and moves to B, which has not read it yet
my $sb = $B->sse_connect('/events/news', headers => { 'Last-Event-ID' => $ids[0] });
is($sb->status, 200, 'a stream resumes on B with the Last-Event-ID of e1, and waits');
is(scalar($sb->read_events(timeout => 0.5)), 0, 'nothing yet: B has not read past e1');

# B comes back and reads e1..e10 at once: only the last 3 are kept
$P->restore;
ok(wait_redis($B, 'up', 10), 'B is back');
my @got = $sb->read_events(count => $N, timeout => 5);
is(join(' ', map { $_->{data} } @got), '', 'the waiting stream is not sent e8..e10 as if e2..e7 had not been');
ok($sb->is_closed(5), 'it ends instead');
ok($sb->ended_cleanly, 'cleanly (the last chunk), so that EventSource reconnects');
like($B->error_log, qr/the history moved past a replaying stream/, 'B says why');

# the reconnect, with the same Last-Event-ID
my $again = $B->sse_connect('/events/news', headers => { 'Last-Event-ID' => $ids[0] });
is($again->status, 200, 'the reconnect');
my @kept = $again->read_events(count => $HISTORY, timeout => 5);
is(join(' ', map { "$_->{id}=$_->{data}" } @kept),
   join(' ', map { "$ids[$_ - 1]=e$_" } $N - $HISTORY + 1 .. $N),
   'it gets everything kept (e8..e10) with their ids');
my $res = $A->publish('/pub/news', 'live');
my @live = $again->read_events(count => 1, timeout => 5);
push @live, $again->read_events(timeout => 0.5);
is(join(' ', map { $_->{data} } @live), 'live', 'then live, once');

$_->close for $sb, $again;
$A->stop;
$B->stop;
$P->stop;
$r->stop;
done_testing;

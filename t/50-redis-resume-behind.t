#!/usr/bin/perl
# Redis mode: a browser that resumes on a node that has not yet read as far
# as its Last-Event-ID (the node's link was cut while another node went on)
# gets nothing twice: the stream waits until the node has read past its id,
# then gets what follows it, once, in order.  A Last-Event-ID from the far
# future (no node's) is not waited for: the stream is live at once, as one
# without Last-Event-ID, and gets what the node reads from then on.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(sleep);

my $r = SSERedis->start;
my $P = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port);
my $A = start_node(redis => $r, name => 'A');
my $B = start_node(url => $P->url, name => 'B');

my $sa = $A->sse_connect('/events/news');
is($sa->status, 200, 'a stream on A');

$P->cut;
wait_redis($B, 'down', 10);

my @ids;
for my $i (1 .. 3) {
    my $res = $A->publish('/pub/news', "e$i");
    is($res->{status}, 201, "POST e$i on A while B is cut off");
    push @ids, $res->{json}{id};
}
my @got = $sa->read_events(count => 3, timeout => 5);
is(join(' ', map { $_->{data} } @got), 'e1 e2 e3', 'A delivered e1..e3');

# the browser moves to B, which has not read them yet
my $sb = $B->sse_connect('/events/news', headers => { 'Last-Event-ID' => $ids[-1] });
is($sb->status, 200, 'the stream resumes on B with the Last-Event-ID of e3');
# and a second one that had seen only e1
my $sb1 = $B->sse_connect('/events/news', headers => { 'Last-Event-ID' => $ids[0] });
# and one with an id no node gave, far ahead of any clock
my $far = $B->sse_connect('/events/news', headers => { 'Last-Event-ID' => '99999999999999-0' });

$P->restore;
wait_redis($B, 'up', 10);

my $res = $A->publish('/pub/news', 'e4');
is($res->{status}, 201, 'POST e4 on A once B is back');

my @b = $sb->read_events(count => 1, timeout => 10);
is(join(' ', map { "$_->{id}=$_->{data}" } @b), "$res->{json}{id}=e4",
   'B sends the stream that had e3 only e4: nothing it had, nothing twice');
my @b1 = $sb1->read_events(count => 3, timeout => 10);
is(join(' ', map { $_->{data} } @b1), 'e2 e3 e4', 'B sends the stream that had e1 e2, e3, e4 in order');
my @f = $far->read_events(count => 4, timeout => 10);
is(join(' ', map { $_->{data} } @f), 'e1 e2 e3 e4',
   'a Last-Event-ID from the far future is not waited for: live at once, it gets what B reads from then on');

sleep 1;
for my $s (['e3', $sb], ['e1', $sb1], ['far', $far]) {
    my @more = $s->[1]->read_events(timeout => 0);
    is(scalar @more, 0, "stream $s->[0]: nothing more a second later");
}

$_->close for $sa, $sb, $sb1, $far;
$A->stop;
$B->stop;
$P->stop;
$r->stop;
done_testing;

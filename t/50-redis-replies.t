#!/usr/bin/perl
# Redis mode: replies a real Redis sends in production that are not the
# usual ones, and what a node does with them.
#   - the reader's XREAD answered with an error (CLIENT UNBLOCK ... ERROR,
#     as in a failover's -UNBLOCKED): one log line that says it, the node
#     reads on, delivery goes on (under valgrind, make test-valgrind-ci:
#     the error's text is logged after hiredis freed the reply);
#   - an entry with the largest id Redis allows (XADD 18446744073709551614-0):
#     read as any, delivered, and the log goes on past it (the reader once
#     could not parse it and asked for it again, thousands of times a
#     second, and delivered nothing more);
#   - SCRIPT FLUSH: the node's scripts are gone; PUBLISH conversion and
#     POST work again within seconds, without reload.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
my $A = start_node(redis => $r, name => 'A', ready_timeout => 60);
my $s = $A->sse_connect('/events/news');
is($s->status, 200, 'a stream on A');

# --- XREAD answered with an error
my $mark = $A->log_mark;
my $unblocked = 0;
for my $try (1 .. 40) {
    my ($cid) = $r->cmd('CLIENT', 'LIST') =~ /id=(\d+) [^\n]*cmd=xread/;
    if ($cid) {
        $unblocked = $r->cmd('CLIENT', 'UNBLOCK', $cid, 'ERROR');
        last;
    }
    sleep 0.25;
}
is($unblocked, 1, "the reader's blocked XREAD is unblocked with an error");
my $res;
my $t0 = time;
do { sleep 0.2; $res = $A->publish('/pub/news', 'after unblock') }
    until $res->{status} == 201 || time - $t0 > 10;
is($res->{status}, 201, 'POST works after the error');
my @e = $s->read_events(count => 1, timeout => 10);
is(join(' ', map { $_->{data} } @e), 'after unblock', 'the stream gets the event published after it');
my @lines = grep { /UNBLOCKED/ } split /\n/, $A->error_log_since($mark);
is(scalar @lines, 1, 'one log line names the error') or diag(join "\n", @lines);
like($lines[0] // '', qr/UNBLOCKED client unblocked via CLIENT UNBLOCK/, 'it has the error as Redis sent it');

# --- the largest id
$mark = $A->log_mark;
my $big = $r->cmd('XADD', 'sse:log', '18446744073709551614-0', 'channel', 'news', 'data', 'largest id');
is($big, '18446744073709551614-0', 'XADD with the largest id');
@e = $s->read_events(count => 1, timeout => 10);
is(join(' ', map { "$_->{id}=$_->{data}" } @e), '18446744073709551614-0=largest id',
   'the entry is delivered, with its id');
$res = $A->publish('/pub/news', 'after the largest');
is($res->{status}, 201, 'POST after it: 201');
like($res->{json}{id} // '', qr/^18446744073709551614-[1-9]\d*$/, 'its id follows the largest one');
@e = $s->read_events(count => 1, timeout => 10);
is(join(' ', map { $_->{data} } @e), 'after the largest', 'and it is delivered');
my @warn = log_lines($A->error_log_since($mark), qw(warn error crit alert emerg));
is(scalar @warn, 0, 'nothing logged about it') or diag(join "\n", @warn[0 .. ($#warn < 5 ? $#warn : 5)]);

# --- SCRIPT FLUSH
$mark = $A->log_mark;
is($r->cmd('SCRIPT', 'FLUSH'), 'OK', 'SCRIPT FLUSH');
$t0 = time;
my $got = '';
my $n = 0;
while (time - $t0 < 15 && $got eq '') {
    $n++;
    $r->cmd('PUBLISH', 'sse:news', "published $n");
    my @p = $s->read_events(count => 1, timeout => 1);
    $got = $p[0]{data} // '';
}
like($got, qr/^published \d+$/, 'a PUBLISH is converted again after the flush');
diag(sprintf 'after %.1f s', time - $t0);
$res = $A->publish('/pub/news', 'post after flush');
is($res->{status}, 201, 'POST after the flush: 201');
@e = $s->read_events(count => 1, timeout => 10);
is($e[0]{data} // '', 'post after flush', 'and it is delivered');
my $since = $A->error_log_since($mark);
unlike($since, qr/lease went to another node/, 'the log does not say the lease went elsewhere');
like($since, qr/NOSCRIPT/, 'it says the scripts were gone');

$s->close;
$A->allow_log(qr/UNBLOCKED|NOSCRIPT|unavailable|link up/);
$A->stop;
$r->stop;
done_testing;

#!/usr/bin/perl
# sse_max_pending: a subscriber that cannot keep up is closed and counted,
# never silently skipped; it resumes from history; fast ones get everything.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(
    workers => 1,
    http => "sse_history 1000;\nclient_max_body_size 1m;\n",
    server_extra => <<'EOS',
        location ~ ^/slow/(.+)$ { sse_stream $1; sse_max_pending 256k; }
EOS
);

sub ids_of { map { $_->{id} // 'undef' } @_ }

my $fast = $srv->sse_connect('/slow/sl');
my $slow = $srv->sse_connect('/slow/sl', rcvbuf => 4096);
is($fast->status, 200, 'fast subscriber');
is($slow->status, 200, 'slow subscriber (small receive buffer, not reading)');
ok($srv->wait_stat(subscribers => 2, 3), 'status: 2 subscribers');
my $slow0 = $srv->stat('slow_closed');
is($slow0, 0, 'slow_closed is 0 at the start');

# far more than the socket buffers and sse_max_pending can hold:
# 600 x 20 kB = 12 MB, each event much smaller than sse_max_pending
my $N = 600;
my (@ids, @got_fast);
my $t0 = time();
for my $i (1 .. $N) {
    my $r = $srv->publish('/pub/sl', sprintf("%04d ", $i) . ('s' x 20_000));
    is($r->{status}, 201, "publish $i") unless $r->{status} == 201;
    push @ids, $r->{json}{id};
    push @got_fast, $fast->read_events(timeout => 0);
}
push @got_fast, $fast->read_events(count => $N - @got_fast, timeout => 10);
diag(sprintf 'published 12 MB in %.1fs', time() - $t0);
is(scalar @got_fast, $N, "the fast subscriber got all $N events");
is_deeply([ids_of(@got_fast)], \@ids, '...in order, once');

ok($srv->wait_stat(subscribers => 1, 5), 'the slow subscriber was closed');
is($srv->stat('slow_closed'), $slow0 + 1, 'status counts it in slow_closed: 1');

# the slow client now drains what it was sent: a gapless prefix, then the end
ok($slow->is_closed(10), 'the slow stream ends once drained');
my @sev = $slow->read_events(timeout => 0);
my @sids = ids_of(@sev);
ok(@sids < $N, 'the slow subscriber did not get everything (' . scalar(@sids) . ' events)');
is_deeply(\@sids, [@ids[0 .. $#sids]], 'what it got is a prefix of the published events: no gap, no skip');
ok(!grep({ length($_->{data}) != 20_005 } @sev), 'every event it got is whole');

# it resumes from history
my $from = @sids ? $sids[-1] : '0-0';
my $re = $srv->sse_connect('/slow/sl', headers => { 'Last-Event-ID' => $from });
my @rest = $re->read_events(count => $N - @sids, timeout => 10);
push @rest, $re->read_events(timeout => 0.3);
is_deeply([ids_of(@rest)], [@ids[scalar(@sids) .. $N - 1]], 'resuming (reading as fast as it can) gets exactly the rest');
is($srv->stat('slow_closed'), $slow0 + 1, 'the resuming subscriber was not closed as slow');

$fast->close;
$re->close;
$srv->stop;
done_testing;

#!/usr/bin/perl
# With a level-triggered event method (events { use poll; } or select), a
# stream that fell behind and then caught up must leave its worker idle:
# the write event it needed during the backlog is removed once nothing is
# owed, or the worker would wake up for it in a loop (100% CPU) for as long
# as the stream stays open.  A subscriber that does not read while 2 MB is
# published (small socket buffers on both sides), then reads it all; then,
# for 3 s of quiet, the worker must use almost no CPU time.  This detects a
# spin (~3 s of CPU in 3 s), it does not measure a speed.
#
# Debian's nginx is built without the poll and select modules: when
# NGINX_BIN has neither, this file runs the nginx that make test builds
# with them from Debian's nginx source package (mk/poll.mk: SSE_POLL_NGINX
# and SSE_POLL_MODULE, the module built for it).
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use POSIX ();
use Time::HiRes qw(time sleep);

sub methods {
    grep {
        SSETest::nginx_config_test(workers => 1, events => "use $_;\n    worker_connections 512;")->{ok}
    } qw(poll select);
}
my @methods = methods();
if (!@methods && $ENV{SSE_POLL_NGINX} && -x $ENV{SSE_POLL_NGINX}) {
    $ENV{NGINX_BIN} = $ENV{SSE_POLL_NGINX};
    $ENV{SSE_MODULE} = $ENV{SSE_POLL_MODULE};
    @methods = methods();
}
my $bin = $ENV{NGINX_BIN} || '/usr/sbin/nginx';
BAIL_OUT("$bin has neither the poll nor the select event module, and no "
         . 'SSE_POLL_NGINX was built (make poll-nginx)')
    unless @methods;
diag("$bin lacks the select module: only poll is tested") unless grep { $_ eq 'select' } @methods;
diag("$bin lacks the poll module: only select is tested") unless grep { $_ eq 'poll' } @methods;

my $TCK = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;

# utime + stime of a process, in seconds
sub cpu_seconds {
    my ($pid) = @_;
    my $st = SSETest::_slurp("/proc/$pid/stat") // return undef;
    $st =~ s/^.*\) //s;                 # after "pid (comm) "
    my @f = split ' ', $st;             # $f[0] is field 3 (state)
    return ($f[11] + $f[12]) / $TCK;    # fields 14, 15
}

for my $m (@methods) {
    my $srv = start_nginx(
        workers      => 1,
        events       => "use $m;\n    worker_connections 512;",
        listen_opts  => 'sndbuf=4096',
        http         => "sse_history 200;\nclient_body_buffer_size 64k;\n",
        server_extra => <<'EOS',
        location ~ ^/big/(.+)$ { sse_stream $1; sse_max_pending 8m; sse_heartbeat off; }
EOS
    );
    like($srv->error_log, qr/using the "$m" event method/, "$m: nginx uses $m");
    my ($w) = $srv->worker_pids;

    my $s = $srv->sse_connect('/big/b', rcvbuf => 4096);
    is($s->status, 200, "$m: a subscriber that does not read (4 kB receive buffer)");
    ok($srv->wait_stat(subscribers => 1, 5), "$m: status: 1 subscriber");

    my @ids;
    for my $i (1 .. 100) {
        my $r = $srv->publish('/pub/b', sprintf('%04d ', $i) . ('y' x 20_000));
        is($r->{status}, 201, "$m: publish $i") unless $r->{status} == 201;
        push @ids, $r->{json}{id};
    }
    is($srv->stat('subscribers'), 1, "$m: 2 MB published, the subscriber is still there");

    my @ev = $s->read_events(count => 100, timeout => 30);
    is(scalar(@ev), 100, "$m: then it reads all 100 events");
    is_deeply([map { $_->{id} } @ev], \@ids, "$m: ...in order");
    ok(!grep({ length($_->{data}) != 20_005 } @ev), "$m: ...each whole");

    sleep 0.5;                  # what is left of the catching up
    my $c0 = cpu_seconds($w);
    my $t0 = time();
    sleep 3;
    my $c1 = cpu_seconds($w);
    my $t1 = time();
    ok(defined $c0 && defined $c1, "$m: the worker's CPU time is readable");
    my $used = ($c1 // 0) - ($c0 // 0);
    cmp_ok($used, '<', 0.3,
           sprintf("$m: idle for %.1f s with the stream open, the worker used less than 0.3 s of CPU", $t1 - $t0))
        or diag(sprintf '%.2f s of CPU: the worker spins', $used);

    my $r = $srv->publish('/pub/b', 'after the quiet');
    @ev = $s->read_events(count => 1, timeout => 5);
    is_deeply([map { $_->{data} } @ev], ['after the quiet'], "$m: the stream still gets events");
    is(join(',', $srv->worker_pids), $w, "$m: by the same worker");
    $s->close;
    ok($srv->wait_stat(subscribers => 0, 5), "$m: the subscriber leaves");
    $srv->stop;
}

done_testing;

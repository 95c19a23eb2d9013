#!/usr/bin/perl
# Two nginx instances in their own pid namespaces on one network namespace
# (containers on the host network, sidecars of one pod): their workers have
# the same pids, and each instance's workers must wake only each other.
# Each instance starts with all its workers, and delivers its own events to
# its own subscribers, none of the other's.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use POSIX ();

ok(system('unshare --pid --fork --mount-proc true >/dev/null 2>&1') == 0,
   'unshare can make a pid namespace (needs root)')
    or BAIL_OUT('this test needs root and util-linux unshare');

my (@srv, @wrap);
for my $i (0, 1) {
    my ($dir, $conf, $port, $bin) = SSETest::_make_conf(workers => 2);
    $conf =~ s/daemon on;/daemon off;/ or die 'no daemon line';
    open my $fh, '>', "$dir/nginx.conf" or die;
    print $fh $conf;
    close $fh;

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', "$dir/start.log";
        no warnings 'exec';
        exec 'unshare', '--pid', '--fork', '--mount-proc',
             $bin, '-p', "$dir/", '-c', "$dir/nginx.conf", '-e', "$dir/error.log";
        POSIX::_exit(127);
    }
    push @wrap, $pid;

    # nginx's master is the child of unshare, pid 1 inside its namespace
    my $probe = bless { pid => $pid }, 'SSETest::Server';
    my $master;
    SSETest::wait_until(sub { ($master) = $probe->child_pids; $master }, 10);
    my $srv = bless {
        port => $port, dir => $dir, bin => $bin, workers => 2, conf => $conf,
        owner => $$, stopped => 0, allow_log => [], opts => {}, pid => $master,
    }, 'SSETest::Server';
    push @srv, $srv;
    ok(SSETest::wait_until(sub { scalar($srv->worker_pids) >= 2 }, 10),
       "instance $i runs its 2 workers")
        or diag($srv->error_log);
}

# the pids the workers have inside their namespaces
sub inner_pids {
    my ($srv) = @_;
    return join ',', sort map {
        my $st = SSETest::_slurp("/proc/$_/status") // '';
        $st =~ /^NSpid:\s.*?(\d+)\s*$/m ? $1 : "?$_";
    } $srv->worker_pids;
}
is(inner_pids($srv[0]), inner_pids($srv[1]),
   'the workers of both have the same pids (' . inner_pids($srv[0]) . ')');

for my $i (0, 1) {
    unlike($srv[$i]->error_log, qr/bind\(\)|emerg|exited with fatal/,
           "instance $i: no bind() failure of a wake-up socket");
}

my @subs;
for my $i (0, 1) {
    $subs[$i] = [ $srv[$i]->sse_connect_many(12, '/events/ns') ];
    is(scalar(grep { $_->status == 200 } @{ $subs[$i] }), 12, "instance $i: 12 streams");
    ok($srv[$i]->wait_stat(subscribers => 12, 5), "instance $i: 12 subscribers");
}

for my $i (0, 1) {
    my $r = $srv[$i]->publish('/pub/ns', "from instance $i");
    is($r->{status}, 201, "publish on instance $i");
}

for my $i (0, 1) {
    my $good = 0;
    for my $s (@{ $subs[$i] }) {
        my @ev = $s->read_events(count => 1, timeout => 5);
        push @ev, $s->read_events(timeout => 0.2);
        $good++ if @ev == 1 && $ev[0]{data} eq "from instance $i";
    }
    is($good, 12, "instance $i: every subscriber got its instance's event, only it");
}

$_->close for map { @$_ } @subs;
for my $i (0, 1) {
    $srv[$i]->stop;
    waitpid($wrap[$i], 0);
}
done_testing;

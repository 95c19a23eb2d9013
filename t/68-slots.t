#!/usr/bin/perl
# A worker's place in the hub (its slot: its subscribers, its read position
# in the event log) is released when the worker dies without exiting, in
# every case:
#  - pid reuse: the worker the master respawns after a SIGKILL gets the
#    dead worker's pid (nginx in its own pid namespace, ns_last_pid set);
#  - EPERM: the dead worker's pid is taken by a process of another user
#    (kill(pid, 0) fails with EPERM, not ESRCH);
#  - crash consistency: a worker killed inside the hub's lock, during
#    heavy publishing and during a slot release, leaves exact counts.
# What a user sees: the counts in status are the real ones, a small zone
# keeps answering 201 while events flow to a subscriber in another
# worker, and zone_bytes_used returns near its baseline once everything
# is gone.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use IPC::Open2 qw(open2);
use IO::Select;
use POSIX ();
use Time::HiRes qw(time sleep);

ok(system('unshare --pid --fork --mount-proc true >/dev/null 2>&1') == 0,
   'unshare can make a pid namespace (needs root)')
    or BAIL_OUT('this test needs root and util-linux unshare');
ok(system('nsenter --version >/dev/null 2>&1') == 0, 'nsenter is installed')
    or BAIL_OUT('this test needs util-linux nsenter');

my $ZONE_HTTP = "sse_zone small:1m;\nsse_history 5;\nclient_max_body_size 8m;\n"
              . "client_body_buffer_size 64k;\n";

# nginx (daemon off) as pid 1 of a new pid namespace; returns the server
# object (pid: the master's pid outside) and the pid of unshare
sub start_in_pidns {
    my (%o) = @_;
    my $user = delete $o{user};
    my ($dir, $conf, $port, $bin) = SSETest::_make_conf(%o);
    $conf =~ s/daemon on;/daemon off;/ or die 'no daemon line';
    if ($user) {
        $conf =~ s/^user root;\n//m;
        $conf = "user $user;\n$conf";
    }
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
    my $probe = bless { pid => $pid }, 'SSETest::Server';
    my $master;
    SSETest::wait_until(sub { ($master) = $probe->child_pids; $master }, 10);
    die "nginx did not start in its pid namespace\n" unless $master;
    my $srv = bless {
        port => $port, dir => $dir, bin => $bin, workers => $o{workers},
        conf => $conf, owner => $$, stopped => 0, allow_log => [], opts => {},
        pid => $master,
    }, 'SSETest::Server';
    $SSETest::LIVE{"$srv"} = $srv;
    SSETest::wait_until(sub {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Timeout => 1);
        $s && scalar($srv->worker_pids) >= $o{workers};
    }, 10, 0.05) or die "nginx in its pid namespace is not up:\n" . $srv->error_log;
    return ($srv, $pid);
}

# the pid a process has inside its pid namespace
sub inner_pid {
    my ($pid) = @_;
    my $st = SSETest::_slurp("/proc/$pid/status") // return undef;
    return $st =~ /^NSpid:\s.*?(\d+)\s*$/m ? $1 : undef;
}

# next pid the namespace of $master hands out: $n (written by a process
# inside it; only root in the namespace may)
sub set_next_pid {
    my ($master, $n) = @_;
    my $rc = system('nsenter', '-t', $master, '-p', '--', 'perl', '-e',
        'open my $f, ">", "/proc/sys/kernel/ns_last_pid" or die "open: $!";'
        . 'print $f $ARGV[0] - 1; close $f or die "write: $!"', $n);
    return $rc == 0;
}

# a new worker (not in %$old) that has started
sub new_worker {
    my ($srv, $old) = @_;
    my $w;
    wait_until(sub { ($w) = grep { !$old->{$_} } $srv->worker_pids; $w }, 10);
    return $w;
}

# streams opened until each worker in @$want has $n of them
sub streams_on {
    my ($srv, $path, $want, $n) = @_;
    my (%on, @keep);
    for my $try (1 .. 200) {
        last unless grep { ($on{$_} // 0) < $n } @$want;
        my $s = $srv->sse_connect($path);
        my $w = $s->worker // '';
        if ($s->status == 200 && ($on{$w} // 0) < $n && grep { $_ eq $w } @$want) {
            $on{$w}++;
            push @keep, $s;
        } else {
            $s->close;
        }
    }
    return @keep;
}

# publishes 200 x 20 kB to $ch, read as they come by $sub; returns
# (number of 201s, first non-201 and its status)
sub flood {
    my ($srv, $ch, $sub) = @_;
    my ($ok, $first_bad, $got) = (0, undef, 0);
    for my $i (1 .. 200) {
        my $r = $srv->publish("/pub/$ch", sprintf('%03d ', $i) . ('z' x 20_000));
        if ($r->{status} == 201) { $ok++ } else { $first_bad //= "#$i: $r->{status}" }
        $got += $sub->read_events(timeout => 0);
    }
    $got += $sub->read_events(count => 200 - $got, timeout => 5) if $got < 200;
    return ($ok, $first_bad, $got);
}

sub zone_back_near {
    my ($srv, $base, $what) = @_;
    my $used;
    my $ok = wait_until(sub {
        $used = $srv->stat('zone_bytes_used');
        $used >= 0 && $used <= $base + 64 * 1024;
    }, 5, 0.1);
    ok($ok, "$what: zone_bytes_used back near its baseline ($used, baseline $base)");
}

# ------------------------------------------------------------ pid reuse

{
    my ($srv, $wrap) = start_in_pidns(workers => 2, http => $ZONE_HTTP);
    $srv->allow_log(qr/exited on signal 9/);
    my $base = $srv->stat('zone_bytes_used');
    my @w = $srv->worker_pids;
    my %inner = map { inner_pid($_) => $_ } @w;
    is(scalar(keys %inner), 2, 'pid reuse: 2 workers in the pid namespace (' . join(',', sort keys %inner) . ')');

    my ($victim_in, $other_in) = sort { $a <=> $b } keys %inner;
    my @subs = streams_on($srv, '/events/a', [$victim_in, $other_in], 3);
    is(scalar(@subs), 6, 'pid reuse: 3 subscribers of channel a in each worker');
    ok($srv->wait_stat(subscribers => 6, 5), 'pid reuse: status: 6 subscribers');

    ok(set_next_pid($srv->pid, $victim_in), "pid reuse: the namespace's next pid is $victim_in");
    my %old = map { $_ => 1 } @w;
    kill 'KILL', $inner{$victim_in};
    my $nw = new_worker($srv, \%old);
    ok($nw, 'pid reuse: the master respawned the killed worker');
    is(inner_pid($nw // 0), $victim_in,
       "pid reuse: the new worker has the dead worker's pid $victim_in");

    my @alive = grep { $_->worker eq $other_in } @subs;
    $_->close for grep { $_->worker eq $victim_in } @subs;
    ok(wait_until(sub { $srv->stat('workers') == 2 }, 5, 0.1),
       'pid reuse: status: workers 2 (' . $srv->stat('workers') . ')');
    ok($srv->wait_stat(subscribers => 3, 5),
       'pid reuse: status: subscribers 3, the real ones (' . $srv->stat('subscribers') . ')');

    my ($live) = streams_on($srv, '/events/y', [$other_in], 1);
    ok($live, 'pid reuse: a subscriber of channel y in the other worker');
    my ($ok, $bad, $got) = flood($srv, 'y', $live);
    is($ok, 200, '200 x 20 kB with sse_history 5 in a 1 MB zone: all 201')
        or diag("first failure: $bad; status: " . json_encode($srv->status));
    is($got, 200, 'pid reuse: the subscriber in the other worker got them all');

    $_->close for @alive, $live;
    ok($srv->wait_stat(subscribers => 0, 5), 'pid reuse: all subscribers gone');
    $srv->http('DELETE', "/pub/$_") for qw(a y);
    zone_back_near($srv, $base, 'pid reuse');
    $srv->stop;
    waitpid($wrap, 0);
}

# ------------------------------------------------------------ EPERM

{
    # the workers run as nobody: kill(pid, 0) on another user's process
    # fails with EPERM (as root it would succeed)
    my ($srv, $wrap) = start_in_pidns(workers => 1, http => $ZONE_HTTP, user => 'nobody nogroup');
    $srv->allow_log(qr/exited on signal 9/);
    my $base = $srv->stat('zone_bytes_used');
    my ($old) = $srv->worker_pids;
    my $old_in = inner_pid($old);
    my @subs = $srv->sse_connect_many(3, '/events/a');
    is(scalar(grep { $_->status == 200 } @subs), 3, 'EPERM: 3 subscribers of channel a');
    ok($srv->wait_stat(subscribers => 3, 5), 'EPERM: status: 3 subscribers');

    # a reload while the worker is stuck: the master does not respawn an
    # old worker that dies, so another process can take its pid
    kill 'STOP', $old;
    kill 'HUP', $srv->pid;
    my $nw = new_worker($srv, { $old => 1 });
    ok($nw, 'EPERM: the reload started a new worker');
    kill 'STOP', $nw;                   # no housekeeping while the pid changes hands
    kill 'KILL', $old;
    ok(wait_until(sub { !-e "/proc/$old" }, 10), "EPERM: the old worker $old_in died and was reaped");

    my ($sq_out, $sq_in);
    my $sq = open2($sq_out, $sq_in, 'nsenter', '-t', $srv->pid, '-p', '--', 'perl', '-e', <<'EOP', $old_in);
use POSIX ();
open my $f, '>', '/proc/sys/kernel/ns_last_pid' or die "open: $!";
print $f $ARGV[0] - 1;
close $f or die "write: $!";
my $c = fork // die "fork: $!";
if (!$c) {
    POSIX::setgid(54321) or die "setgid: $!";
    POSIX::setuid(54321) or die "setuid: $!";
    print STDOUT "$$ uid $<\n";
    STDOUT->flush;
    sysread STDIN, my $b, 1;          # until the test closes the pipe
    POSIX::_exit(0);
}
waitpid $c, 0;
EOP
    my $line = IO::Select->new($sq_out)->can_read(10) ? readline($sq_out) : undef;
    $line //= '';
    like($line, qr/^$old_in uid 54321$/,
         "EPERM: a process of uid 54321 now has the dead worker's pid $old_in");
    kill 'CONT', $nw;

    my $nw_in = inner_pid($nw);
    $_->close for @subs;
    ok(wait_until(sub { $srv->stat('workers') == 1 }, 5, 0.1),
       'EPERM: status: workers 1 (' . $srv->stat('workers') . ')');
    ok($srv->wait_stat(subscribers => 0, 5),
       'EPERM: status: subscribers 0 (' . $srv->stat('subscribers') . ')');

    my $live = $srv->sse_connect('/events/y');
    is($live->worker, $nw_in, 'EPERM: a subscriber of channel y in the new worker');
    my ($ok, $bad, $got) = flood($srv, 'y', $live);
    is($ok, 200, 'EPERM: 200 x 20 kB with sse_history 5 in a 1 MB zone: all 201')
        or diag("first failure: $bad; status: " . json_encode($srv->status));
    is($got, 200, 'EPERM: the subscriber got them all');
    $live->close;
    ok($srv->wait_stat(subscribers => 0, 5), 'EPERM: all subscribers gone');
    $srv->http('DELETE', "/pub/$_") for qw(a y);
    zone_back_near($srv, $base, 'EPERM');

    close $sq_in;
    waitpid($sq, 0);
    $srv->stop;
    waitpid($wrap, 0);
}

# ------------------------------------------------------------ killed in the lock

my $CAP_SERVER = <<'EOS';
        location ~ ^/cap/(.+)$ { sse_stream $1; sse_max_subscribers 5; }
EOS

# sse_max_subscribers 5 on $ch, which already has $have subscribers:
# 5 - $have more are admitted, one more is refused
sub cap_holds {
    my ($srv, $ch, $have, $what) = @_;
    my @in = $srv->sse_connect_many(5 - $have, "/cap/$ch");
    is(scalar(grep { $_->status == 200 } @in), 5 - $have,
       "$what: sse_max_subscribers 5 admits " . (5 - $have) . " more on $ch ("
       . join(',', map { $_->status } @in) . ')');
    my $over = $srv->sse_connect("/cap/$ch");
    is($over->status, 503, "$what: ...and refuses the next one");
    $over->close;
    return @in;
}

# a line at a time from a pipe, within $timeout
sub read_line {
    my ($fh, $buf, $timeout) = @_;
    my $deadline = time() + $timeout;
    while ($$buf !~ /\n/) {
        my $left = $deadline - time();
        return undef if $left <= 0 || !IO::Select->new($fh)->can_read($left);
        my $n = sysread($fh, $$buf, 4096, length $$buf);
        return undef unless $n;
    }
    $$buf =~ s/^([^\n]*\n)//;
    return $1;
}

{
    # heavy publishing (several publishers, batches) with subscribers
    # coming and going in both workers, and a worker SIGKILLed again and
    # again
    my $srv = start_nginx(workers => 2, server_extra => $CAP_SERVER,
        http => "sse_zone crash:8m;\nsse_history 20;\nclient_body_buffer_size 64k;\n");
    $srv->allow_log(qr/exited on signal 9/,
                    qr/shared memory zone "crash" was locked by/);   # nginx's own recovery
    my $base = $srv->stat('zone_bytes_used');
    my @chans = qw(c1 c2 c3 c4);

    my @pubs;
    for my $p (1 .. 3) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            my %st;
            my $end = time() + 60;
            my $i = 0;
            local $SIG{TERM} = sub { $end = 0 };
            while (time() < $end) {
                my $ch = $chans[$i++ % @chans];
                my $r = $i % 3
                    ? $srv->publish("/pub/$ch", join('', map { "event: b\ndata: $p $i $_ " . ('p' x 500) . "\n\n" } 1 .. 8),
                                    content_type => 'text/event-stream', timeout => 5)
                    : $srv->publish("/pub/$ch", "$p $i", timeout => 5);
                $st{$r->{status}}++;
                sleep 0.005;
            }
            open my $fh, '>', $srv->dir . "/publisher.$p" or POSIX::_exit(1);
            print $fh join(' ', map { "$_:$st{$_}" } sort keys %st), "\n";
            close $fh;
            POSIX::_exit(0);
        }
        push @pubs, $pid;
    }

    my @open;
    my @combos = ('c1', 'c2,c3', 'c4,c1', 'c3', 'c1,c2,c3,c4');
    my $killed = 0;
    my $t_rounds = time();
    for my $round (1 .. 6) {
        push @open, grep { $_->status == 200 }
            $srv->sse_connect_many(6, sub { '/events/' . $combos[($round + $_[0]) % @combos] });
        $_->read_events(timeout => 0) for @open;
        @open = grep { !$_->is_closed(0) } @open;
        $_->close for splice @open, 0, 2;
        my @w = $srv->worker_pids;
        my $victim = $w[$round % @w];
        kill 'KILL', $victim and $killed++;
        my $nw = new_worker($srv, { map { $_ => 1 } @w });
        wait_until(sub { scalar($srv->worker_pids) == 2 }, 10);
        my $t = time() + 0.3;
        while (time() < $t) { $_->read_events(timeout => 0.02) for @open }
    }
    # new streams in both workers while the publishing goes on
    push @open, grep { $_->status == 200 }
        $srv->sse_connect_many(8, sub { '/events/' . $combos[$_[0] % @combos] });
    my $t_more = time() + 1;
    while (time() < $t_more) { $_->read_events(timeout => 0.02) for @open }
    kill 'TERM', @pubs;
    waitpid($_, 0) for @pubs;
    diag(sprintf 'crash: %d rounds in %.1f s', 6, time() - $t_rounds);
    is($killed, 6, 'crash: a worker SIGKILLed 6 times in a row under load');
    my @pst = map { SSETest::_slurp($srv->dir . "/publisher.$_") // 'none' } 1 .. 3;
    ok(!grep({ !/^(?:(?:0|201):\d+\s*)+$/ } @pst),
       'crash: every publish answered 201 (or lost its connection to a killed worker): '
       . join(' | ', map { s/\s+$//r } @pst));

    my $t = time() + 1;
    while (time() < $t) { $_->read_events(timeout => 0.05) for @open }
    @open = grep { !$_->is_closed(0) } @open;
    my $real = @open;
    ok($real > 0, "crash: $real streams are still open");
    ok($srv->wait_stat(subscribers => $real, 5),
       "crash: status: subscribers $real, exactly the open streams (" . $srv->stat('subscribers') . ')');
    is($srv->stat('workers'), 2, 'crash: status: workers 2');

    $_->close for @open;
    ok($srv->wait_stat(subscribers => 0, 5),
       'crash: all closed: subscribers 0 (' . $srv->stat('subscribers') . ')');
    my @capped = cap_holds($srv, 'c1', 0, 'crash');
    my $r = $srv->publish('/pub/c1', 'after the crashes');
    is($r->{status}, 201, 'crash: a publish after the crashes');
    is(scalar(grep { my @e = $_->read_events(count => 1, timeout => 5);
                     @e && $e[0]{data} eq 'after the crashes' } @capped),
       scalar(@capped), 'crash: ...reaches every subscriber');
    $_->close for @capped;
    ok($srv->wait_stat(subscribers => 0, 5), 'crash: subscribers 0 again');
    $srv->http('DELETE', "/pub/$_") for @chans;
    zone_back_near($srv, $base, 'crash');
    $srv->stop;
}

{
    # a dead worker's subscriber of three channels is one subscriber
    my $srv = start_nginx(workers => 2, server_extra => $CAP_SERVER);
    $srv->allow_log(qr/exited on signal 9/);
    my ($A, $B) = $srv->worker_pids;
    my ($m) = streams_on($srv, '/events/m1,m2,m3', [$A], 1);
    my ($o) = streams_on($srv, '/events/m1', [$B], 1);
    ok($m && $o, 'multi: a subscriber of m1,m2,m3 in one worker, one of m1 in the other');
    ok($srv->wait_stat(subscribers => 2, 5), 'multi: status: 2 subscribers');
    kill 'KILL', $A;
    ok(new_worker($srv, { $A => 1, $B => 1 }), 'multi: the master respawned the killed worker');
    ok($m->is_closed(5), "multi: the dead worker's stream ended");
    ok(wait_until(sub { $srv->stat('subscribers') == 1 }, 5, 0.1),
       'multi: status: subscribers 1 (' . $srv->stat('subscribers') . ')');
    my $j = $srv->http('GET', '/pub/m1')->{json};
    is(ref $j eq 'HASH' ? $j->{subscribers} : undef, 1, 'multi: channel m1: 1 subscriber');
    my @capped = cap_holds($srv, 'm2', 0, 'multi');
    $_->close for @capped, $o;
    ok($srv->wait_stat(subscribers => 0, 5),
       'multi: all closed: subscribers 0 (' . $srv->stat('subscribers') . ')');
    $srv->stop;
}

{
    # a worker killed inside the hub's lock in the middle of releasing a
    # dead worker's slot (stopped there by gdb): the next release must
    # not count what the first one already did
    ok(system('gdb --version >/dev/null 2>&1') == 0, 'gdb is installed')
        or BAIL_OUT('this test needs gdb');
    my $srv = start_nginx(workers => 2, server_extra => $CAP_SERVER,
                          http => "sse_history 5;\nclient_body_buffer_size 64k;\n");
    $srv->allow_log(qr/exited on signal 9/,
                    qr/shared memory zone "sse" was locked by/);     # nginx's own recovery
    my $base = $srv->stat('zone_bytes_used');
    my ($A, $B) = $srv->worker_pids;
    my @a = (streams_on($srv, '/events/k1', [$A], 2), streams_on($srv, '/events/k2', [$A], 2));
    my @b = streams_on($srv, '/events/k1', [$B], 1);
    is(scalar(@a) . '+' . scalar(@b), '4+1', 'lock: 2 subscribers of k1 and 2 of k2 in one worker, 1 of k1 in the other');
    ok($srv->wait_stat(subscribers => 5, 5), 'lock: status: 5 subscribers');

    # the other worker's housekeeping must not release the slot first
    kill 'STOP', $B;
    my $gdb = open(my $g, '-|', 'gdb', '-nx', '-batch', '-p', $srv->pid,
        '-ex', 'set confirm off',
        '-ex', 'set follow-fork-mode child',      # the worker the master respawns
        '-ex', 'set detach-on-fork on',
        '-ex', 'break ngx_http_sse_hub_wchan_free_locked',
        '-ex', 'echo READY\n',
        '-ex', 'continue',
        '-ex', 'bt 4',
        '-ex', 'kill') or die "gdb: $!";
    my ($buf, $out) = ('', '');
    while (defined(my $l = read_line($g, \$buf, 30))) {
        $out .= $l;
        last if $l =~ /^READY/;
    }
    ok($out =~ /^READY/m, 'lock: gdb is attached to the master') or diag($out);
    kill 'KILL', $A;
    while (defined(my $l = read_line($g, \$buf, 30))) { $out .= $l }
    kill 'KILL', $gdb if kill 0, $gdb;
    close $g;
    ok($out =~ /hit Breakpoint 1, ngx_http_sse_hub_wchan_free_locked/
       && $out =~ /ngx_http_sse_slot_release_locked/ && $out =~ /\(process \d+\) killed/,
       'lock: the respawned worker was killed inside a release of the dead worker\'s slot')
        or diag("gdb:\n$out");
    kill 'CONT', $B;
    ok(wait_until(sub { my @w = $srv->worker_pids; @w == 2 && !grep { $_ == $A } @w }, 10),
       'lock: the master respawned it again');
    like($srv->error_log, qr/shared memory zone "sse" was locked by \d+/,
         'lock: nginx unlocked the zone the killed worker held');

    ok(!grep({ !$_->is_closed(5) } @a), 'lock: the dead worker\'s streams ended');
    ok($srv->wait_stat(subscribers => 1, 5),
       'lock: status: subscribers 1, the other worker\'s stream (' . $srv->stat('subscribers') . ')');
    is($srv->stat('workers'), 2, 'lock: status: workers 2');
    my @capped = cap_holds($srv, 'k1', 1, 'lock');
    my $r = $srv->publish('/pub/k1', 'after the kill');
    is($r->{status}, 201, 'lock: publish to k1');
    is($r->{json}{subscribers}, 1 + @capped, 'lock: ...counts its ' . (1 + @capped) . ' subscribers')
        if ref $r->{json} eq 'HASH';
    is(scalar(grep { my @e = $_->read_events(count => 1, timeout => 5);
                     @e && $e[0]{data} eq 'after the kill' } @b, @capped),
       1 + @capped, 'lock: ...and reaches them');
    $_->close for @b, @capped;
    ok($srv->wait_stat(subscribers => 0, 5), 'lock: subscribers 0 once they close ('
       . $srv->stat('subscribers') . ')');
    $srv->http('DELETE', "/pub/$_") for qw(k1 k2);
    zone_back_near($srv, $base, 'lock');
    $srv->stop;
}

done_testing;

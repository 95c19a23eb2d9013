#!/usr/bin/perl
# The soak: one nginx (2 workers, our module) under a steady mixed load for
# --minutes (default 30, make soak SOAK_MINUTES=N), reloaded every minute.
# Not a test: it prints the curve of the zone and the workers' memory and a
# verdict, and exits 1 when the verdict fails.
#
#   bench/soak.pl                     30 minutes
#   bench/soak.pl --minutes 5         5 minutes
#   bench/soak.pl --rate 100 -v       a lighter load, with progress
#
# What runs, in processes of their own:
#
#   publishers (2)  POST to channels soak-a..d (and 1 event/s to soak-slow),
#                   mixed sizes (24 B .. 4 KB, some multi-line, some UTF-8,
#                   some of type tick), one request in six a text/event-stream
#                   batch of 2..20 events; --rate events/s in all.  Each event's
#                   data starts with its tag "p=<publisher> c=<channel> n=<seq>",
#                   the rest is a function of (channel, seq), so a subscriber
#                   can check every byte.  Every answer (status, id) is recorded.
#                   soak-slow's 1 event/s under sse_history_ttl 10m: from
#                   about 10 minutes into a long soak its history turns over
#                   by age (events_kept drops by ~1400), not by count.
#   resumers (1)    --resumers streams (8: on 1 to 5 channels each) that act like
#                   a browser's EventSource: they start with Last-Event-ID = the
#                   id of a publish made just before, and reconnect with the last
#                   id they got whenever their stream ends (a reload ends it) and,
#                   now and then, on their own (closing with FIN or RST).  Every
#                   event they get is recorded.
#   churn (1)       --churn subscribers at a time that join and leave all the
#                   time: 0.3 to 6 s each, on main and throw-away channels, some
#                   resuming from an old id (a large replay), some never reading
#                   (left to be closed as too slow), some closing before the
#                   answer, some HEAD; they leave with FIN or with RST.
#   controller      this process: nginx -s reload every --reload-every seconds,
#                   a sample every --sample-every seconds (zone_bytes_used,
#                   events_kept, subscribers, channels from /status; the
#                   workers' VmRSS, RssAnon, RssShmem from /proc/<pid>/status
#                   and the Rss of the zone's mapping from /proc/<pid>/smaps).
#
# The timeline: a first fill of each channel's history (sse_history events,
# in batches) and the resumers' start; one reload interval of load
# (warm-up); a pause (publishers and churn stop, the resumers stay) in which
# the history is filled again with the very same events, then the settle
# period and the START measure; --minutes of load with a reload at the start
# of each interval; a pause, the same fill, the settle period and the END
# measure.  At both measures: the same subscribers (the resumers), the same
# kept events (byte for byte but the tag's fill number), workers that have
# run one reload interval of load.
#
# The verdict (all must hold):
#   - zone_bytes_used at the end within --tolerance % (5) of the start;
#   - the current workers' own memory (RssAnon of /proc/<pid>/status,
#     summed: heap, pools, buffers) at the end within --tolerance % of the
#     start.  Their VmRSS is printed too but not judged: it also counts the
#     pages of the shared zone each worker has touched (RssShmem; the
#     zone_kB column is that mapping's Rss from smaps), which grows toward
#     the zone's size as the slab's pages in use move around the zone,
#     while zone_bytes_used stays the same;
#   - subscribers, events_kept and channels at the end equal to the start;
#   - every resumer got every event published on its channels after its
#     first Last-Event-ID (all the 201 answers with a larger id), exactly
#     once, in order, with the id the publish answer gave (for a batch's
#     last event; its earlier ones: an id between the answer before, on
#     that channel from that publisher, and it), type and data intact;
#   - every publish answered 201;
#   - error.log has no [alert], [crit], [emerg], "exited on signal".
#
# Output: the curve (a table, and three charts) and the verdict on stdout,
# also written to --out (default build/soak/): soak-<time>.txt, the samples
# as soak-<time>.csv and the run's error.log.
#
# Environment: SSE_MODULE (our .so), NGINX_BIN (default /usr/sbin/nginx).
# Perl core modules only; nginx is started by t/lib/SSETest.pm.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";
use SSETest ();
use Getopt::Long;
use IO::Socket::INET;
use IO::Select;
use Socket qw(SOL_SOCKET SO_LINGER IPPROTO_TCP TCP_NODELAY);
use POSIX qw(strftime WNOHANG);
use Time::HiRes qw(time sleep);
use File::Temp qw(tempdir);
use File::Path qw(make_path);
use File::Copy qw(copy);
use JSON::PP ();

$| = 1;

my $REPO = SSETest::repo_dir();

my %opt = (
    minutes      => $ENV{SOAK_MINUTES} // 30,
    rate         => 200,          # events/s, all publishers together
    publishers   => 2,
    resumers     => 8,
    churn        => 12,           # churn subscribers at a time
    reload_every => 60,
    sample_every => 10,
    settle       => 15,
    history      => 2000,
    zone         => '32m',
    tolerance    => 5,            # percent
    out          => "$REPO/build/soak",
    keep         => 0,
    verbose      => 0,
);
GetOptions(
    'minutes=f'      => \$opt{minutes},
    'rate=f'         => \$opt{rate},
    'publishers=i'   => \$opt{publishers},
    'resumers=i'     => \$opt{resumers},
    'churn=i'        => \$opt{churn},
    'reload-every=f' => \$opt{reload_every},
    'sample-every=f' => \$opt{sample_every},
    'settle=f'       => \$opt{settle},
    'history=i'      => \$opt{history},
    'zone=s'         => \$opt{zone},
    'tolerance=f'    => \$opt{tolerance},
    'out=s'          => \$opt{out},
    'keep'           => \$opt{keep},
    'verbose|v'      => \$opt{verbose},
) or die "usage: $0 [--minutes N] [--rate EV/S] [--resumers N] [--churn N] "
       . "[--reload-every S] [--sample-every S] [--settle S] [--history N] "
       . "[--zone SIZE] [--tolerance PCT] [--out DIR] [--keep] [-v]\n";
die "--minutes must be > 0\n" unless $opt{minutes} > 0;
die "--resumers must be 1..8\n" unless $opt{resumers} >= 1 && $opt{resumers} <= 8;
die "--publishers must be >= 1\n" unless $opt{publishers} >= 1;

my @MAIN = map { "soak-$_" } qw(a b c d);
my $SLOW = 'soak-slow';
my @ALL  = (@MAIN, $SLOW);
my %CIDX = map { $ALL[$_] => $_ } 0 .. $#ALL;

# the resumers' channel sets
my @RES_SETS = (
    ['soak-a'], ['soak-b'], ['soak-c'], ['soak-d'],
    ['soak-a', 'soak-b'], ['soak-c', 'soak-d', $SLOW],
    [@ALL], [$SLOW, 'soak-a'],
)[0 .. $opt{resumers} - 1];

my $WORK = tempdir('sse-soak-XXXXXX', TMPDIR => 1, CLEANUP => !$opt{keep});
my $STATE = "$WORK/state";
my @CHILDREN;        # [name, pid]

sub note { print STDERR strftime('%H:%M:%S ', localtime), @_, "\n" }
sub vnote { note(@_) if $opt{verbose} }

# ------------------------------------------------------------- the events

my @SIZES = (24, 60, 120, 200, 300, 500, 800, 1200, 2000, 4000);
my @SIZEW = (10, 15, 15, 15, 10, 10,   8,    7,    6,    4);    # of 100
my $PAD = join '', map { chr(33 + ($_ * 7) % 94) } 0 .. 8191;
$PAD =~ tr/:/;/;

sub _size_of {
    my ($h) = @_;
    my $r = $h % 100;
    for my $i (0 .. $#SIZES) {
        return $SIZES[$i] if $r < $SIZEW[$i];
        $r -= $SIZEW[$i];
    }
    return $SIZES[-1];
}

# the event (type, data) tagged (p, c, n): a function of (c, n) but the tag
sub gen_event {
    my ($p, $c, $n) = @_;
    my $h = ($n * 2654435761 + $CIDX{$c} * 40503 + 12345) % 4294967296;
    my $size = _size_of($h >> 8);
    my $data = "p=$p c=$c n=$n " . substr($PAD, $h % 2048, $size);
    if ($n % 4 == 0) {                       # multi-line
        for (my $i = 70; $i < length $data; $i += 71) { substr($data, $i, 1, "\n") }
    }
    $data .= " \xc3\xa9\xe2\x86\x92" if $n % 9 == 0;    # "é→": UTF-8
    my $type = $n % 7 == 0 ? 'tick' : 'message';
    return ($type, $data);
}

sub parse_tag {
    my ($data) = @_;
    return $data =~ /\Ap=(\S+) c=(\S+) n=(\d+) / ? ($1, $2, $3) : ();
}

sub event_stream_body {
    my @ev = @_;                              # [type, data], ...
    my $b = '';
    for my $e (@ev) {
        $b .= "event: $e->[0]\n" if $e->[0] ne 'message';
        $b .= "data: $_\n" for split /\n/, $e->[1], -1;
        $b .= "\n";
    }
    return $b;
}

# ---------------------------------------------------- state between processes

sub set_state {
    my ($s) = @_;
    open my $fh, '>', "$STATE.tmp" or die "state: $!";
    print $fh $s;
    close $fh;
    rename "$STATE.tmp", $STATE or die "state: $!";
}

sub get_state {
    open my $fh, '<', $STATE or return 'run';
    my $s = <$fh> // 'run';
    close $fh;
    return $s;
}

sub ack {
    my ($name, $s) = @_;
    open my $fh, '>', "$WORK/ack-$name.tmp" or return;
    print $fh $s;
    close $fh;
    rename "$WORK/ack-$name.tmp", "$WORK/ack-$name";
}

sub acked {
    my ($name) = @_;
    open my $fh, '<', "$WORK/ack-$name" or return '';
    my $s = <$fh> // '';
    close $fh;
    return $s;
}

sub spawn {
    my ($name, $code) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $SIG{TERM} = 'DEFAULT';
        my $ok = eval { $code->(); 1 };
        print STDERR "soak: $name died: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    push @CHILDREN, [$name, $pid];
    return $pid;
}

# wait until every child has acknowledged state $s
sub wait_acks {
    my ($s, $timeout) = @_;
    my $deadline = time() + $timeout;
    while (time() < $deadline) {
        return 1 unless grep { acked($_->[0]) ne $s } @CHILDREN;
        sleep 0.1;
    }
    note("children not in state $s: ",
         join ' ', map { $_->[0] } grep { acked($_->[0]) ne $s } @CHILDREN);
    return 0;
}

# --------------------------------------------------------------- nginx

my $HTTP = <<"EOH";
    sse_zone soak:$opt{zone};
    sse_history $opt{history};
    sse_history_ttl 10m;
    sse_retry 1s;
EOH

my $srv = SSETest::start_nginx(workers => 2, http => $HTTP);
note("nginx pid $srv->{pid} on 127.0.0.1:$srv->{port}, dir $srv->{dir}");
my $PORT = $srv->port;

sub proc_mem {
    my ($pid) = @_;
    my $t = SSETest::_slurp("/proc/$pid/status") // return;
    my %m;
    for my $k (qw(VmRSS RssAnon RssFile RssShmem)) {
        $m{$k} = $t =~ /^$k:\s+(\d+) kB/m ? $1 : 0;
    }
    return \%m;
}

# a raw socket to nginx (for the churn and for HTTP answers in a child)
sub tcp {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $PORT,
                                  Proto => 'tcp', Timeout => 10) or return;
    binmode $s;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    return $s;
}

# ------------------------------------------------------- the publishers

# POST one request; returns (status, id, events)
sub post {
    my ($c, $evs, $batch) = @_;
    my $r;
    if ($batch) {
        $r = $srv->publish("/pub/$c", event_stream_body(@$evs),
                           content_type => 'text/event-stream', timeout => 20);
    } else {
        my ($type, $data) = @{ $evs->[0] };
        $r = $srv->publish("/pub/$c", $data,
                           ($type ne 'message' ? (type => $type) : ()), timeout => 20);
    }
    my $j = $r->{json};
    my $id = ref $j eq 'HASH' && defined $j->{id} ? $j->{id} : '-';
    my $n  = ref $j eq 'HASH' && defined $j->{events} ? $j->{events} : -1;
    return ($r->{status} || 0, $id, $n, $r->{error});
}

# publishes events n1..n2 of (p, c) in one request (a batch when more than
# one, or when $force_batch); appends "c n1 n2 status id" to $fh
sub publish_range {
    my ($fh, $p, $c, $n1, $n2, $force_batch) = @_;
    my @evs = map { [gen_event($p, $c, $_)] } $n1 .. $n2;
    my $batch = $force_batch || @evs > 1;
    my ($st, $id, $n, $err) = post($c, \@evs, $batch);
    $st = 0 if $st == 201 && $n != @evs;     # a 201 for another count is wrong too
    print $fh "$c $n1 $n2 $st $id\n";
    return ($st, $id, $err);
}

sub publisher {
    my ($p) = @_;
    my $rate = $opt{rate} / $opt{publishers};
    srand(1000 + $p);
    open my $fh, '>', "$WORK/pub-$p.log" or die "pub log: $!";
    my %n = map { $_ => 0 } @ALL;
    my ($sent, $t0, $slow_next) = (0, time(), time());
    my ($reqs, $fails) = (0, 0);
    my $state = 'run';
    my $last_check = 0;
    while (1) {
        if (time() - $last_check > 0.2) {
            $last_check = time();
            my $s = get_state();
            if ($s ne $state) {
                $fh->flush;
                ack("pub$p", $s);
                ($sent, $t0) = (0, time()) if $s eq 'run';
                $state = $s;
            }
            last if $state eq 'stop';
        }
        if ($state ne 'run') { sleep 0.1; next }
        # soak-slow: publisher 0 only, one event a second
        if ($p == 0 && time() >= $slow_next) {
            $slow_next = time() + 1;
            my $k = ++$n{$SLOW};
            my ($st, $id, $err) = publish_range($fh, $p, $SLOW, $k, $k, 0);
            $reqs++;
            $fails++, note("pub$p: $SLOW n=$k: status $st ", $err // '') if $st != 201;
            $sent++;
        }
        my $c = $MAIN[int rand @MAIN];
        my $count = rand() < 1 / 6 ? 2 + int rand 19 : 1;
        my $k1 = $n{$c} + 1;
        $n{$c} += $count;
        my ($st, $id, $err) = publish_range($fh, $p, $c, $k1, $n{$c}, 0);
        $reqs++;
        $fails++, note("pub$p: $c n=$k1..$n{$c}: status $st ", $err // '') if $st != 201;
        $sent += $count;
        my $ahead = $sent / $rate - (time() - $t0);
        sleep $ahead if $ahead > 0;
    }
    close $fh;
    open my $sf, '>', "$WORK/pub-$p.sum" or die;
    print $sf JSON::PP->new->canonical->encode({ requests => $reqs, failed => $fails,
        events => { %n } });
    close $sf;
}

# the fills: $opt{history} events per channel, in batches of 50; returns
# the last id; the tag's publisher is "f<k>" and n runs 1..history, so the
# fills are the same events but for that number
my $FILL_FH;
sub fill {
    my ($k) = @_;
    my $t0 = time();
    my $last;
    for my $c (@ALL) {
        for (my $n = 1; $n <= $opt{history}; $n += 50) {
            my $n2 = $n + 49 > $opt{history} ? $opt{history} : $n + 49;
            my ($st, $id, $err) = publish_range($FILL_FH, "f$k", $c, $n, $n2, 1);
            die "fill f$k $c $n..$n2: status $st " . ($err // '') . "\n" unless $st == 201;
            $last = $id;
        }
    }
    $FILL_FH->flush;
    vnote(sprintf "fill f$k: %d events in %.1fs, last id %s",
          @ALL * $opt{history}, time() - $t0, $last);
    return $last;
}

# --------------------------------------------------------- the resumers

sub resumers {
    my ($first_id) = @_;
    srand(2000);
    my @st;
    for my $i (0 .. $#RES_SETS) {
        open my $fh, '>', "$WORK/res-$i.log" or die "res log: $!";
        push @st, { i => $i, chans => $RES_SETS[$i], last => $first_id, fh => $fh,
                    connects => 0, server_ends => 0, own_fin => 0, own_rst => 0,
                    bad_status => 0, events => 0, corrupt => 0, corrupt_ex => [],
                    next_at => 0, s => undef, until => 0 };
    }
    my $state = 'run';
    my $last_check = 0;
    my $open = sub {
        my ($r) = @_;
        my $path = '/events/' . join ',', @{ $r->{chans} };
        $r->{s} = SSETest::Stream->_open($srv, $path, defer => 1, timeout => 10,
            headers => { 'Last-Event-ID' => $r->{last} });
        $r->{connects}++;
        $r->{opened} = time();
        $r->{until} = time() + 5 + rand 35;
        print { $r->{fh} } "C $r->{last}\n";
    };
    my $take = sub {
        my ($r) = @_;
        my $s = $r->{s};
        for my $e (splice @{ $s->{queue} }) {
            my ($p, $c, $n) = parse_tag($e->{data});
            my $id = $e->{id} // '-';
            if (!defined $n) {
                $r->{corrupt}++;
                push @{ $r->{corrupt_ex} }, "untagged event id $id" if @{ $r->{corrupt_ex} } < 5;
                print { $r->{fh} } "B $id\n";
                next;
            }
            my ($type, $data) = gen_event($p, $c, $n);
            if ($type ne $e->{event} || $data ne $e->{data}) {
                $r->{corrupt}++;
                push @{ $r->{corrupt_ex} }, "p=$p c=$c n=$n id $id: type/data differ"
                    if @{ $r->{corrupt_ex} } < 5;
            }
            print { $r->{fh} } "E $id $p $c $n\n";
            $r->{events}++;
            $r->{last} = $id if $id ne '-';
        }
        # what was parsed is not needed again: a stream lives up to a minute
        @$s{qw(raw wire)} = ('', '') if $s->{chunked};
    };
    my $end = sub {
        my ($r, $how) = @_;
        my $s = $r->{s} or return;
        $s->_pump(0) unless $how;
        $take->($r);
        if ($how) {
            $how eq 'rst' ? $s->abort : $s->close;
            $r->{"own_$how"}++;
            print { $r->{fh} } "X $how\n";
            $r->{next_at} = time() + rand 0.5;
        } else {
            my $why = $s->{status} == 200 ? 'server' : "status $s->{status}";
            $r->{server_ends}++ if $s->{status} == 200;
            if ($s->{status} != 200) {
                $r->{bad_status}++;
                note("resumer $r->{i}: ", $s->{status} ? "status $s->{status}" : ($s->{error} // 'no answer'));
            }
            print { $r->{fh} } "X $why\n";
            $s->close;
            # as a browser: wait the retry the stream gave (1 s here)
            my $retry = ($s->retry // 1000) / 1000;
            $retry = 3 if $retry > 3;
            $r->{next_at} = time() + $retry;
        }
        $r->{s} = undef;
    };
    $open->($_) for @st;
    while (1) {
        if (time() - $last_check > 0.2) {
            $last_check = time();
            my $s = get_state();
            if ($s ne $state) {
                $state = $s;
                ack('res', $s);
                last if $state eq 'stop';
            }
        }
        my $now = time();
        for my $r (@st) {
            if (!$r->{s}) {
                $open->($r) if $now >= $r->{next_at};
                next;
            }
            # now and then, like a page that reloads (not while paused: the
            # measures want the resumers in place)
            if ($state eq 'run' && $now >= $r->{until} && $r->{s}{head_done}) {
                $end->($r, rand() < 0.5 ? 'rst' : 'fin');
            }
        }
        my %by = map { fileno($_->{s}{sock}) => $_ }
                 grep { $_->{s} && $_->{s}{sock} } @st;
        my $sel = IO::Select->new(map { $_->{s}{sock} } values %by);
        my @ready = $sel->count ? $sel->can_read(0.1) : do { sleep 0.1; () };
        for my $sock (@ready) {
            my $r = $by{ fileno $sock } or next;
            my $s = $r->{s};
            $s->_read_head(0.05) unless $s->{head_done};
            $s->_pump(0) if $s->{head_done};
            $take->($r);
            $end->($r) if $s->{eof} || $s->{ended}
                          || (!$s->{head_done} && $s->{error} && time() - $r->{opened} > 10);
        }
        # a connect that failed (no socket)
        for my $r (grep { $_->{s} && !$_->{s}{sock} } @st) { $end->($r) }
    }
    my %sum;
    for my $r (@st) {
        $take->($r) if $r->{s};
        $r->{s}->close if $r->{s};
        print { $r->{fh} } "X stop\n";
        close $r->{fh};
        $sum{ $r->{i} } = { map { $_ => $r->{$_} }
            qw(chans connects server_ends own_fin own_rst bad_status events corrupt corrupt_ex last) };
    }
    open my $sf, '>', "$WORK/res.sum" or die;
    print $sf JSON::PP->new->canonical->encode(\%sum);
    close $sf;
}

# ------------------------------------------------------------ the churn

sub churn {
    my ($first_id) = @_;
    srand(3000);
    my %st = (connects => 0, status => {}, bytes => 0, fin => 0, rst => 0,
              server_closed => 0, early_close => 0, head => 0, stalled => 0,
              replay => 0, tmp_channels => 0, connect_fail => 0);
    my @slots;
    my $state = 'run';
    my $last_check = 0;
    my $seq = 0;
    my $finish = sub {
        my ($c, $rst) = @_;
        if ($rst) {
            setsockopt($c->{sock}, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
            $st{rst}++;
        } else {
            $st{fin}++;
        }
        close $c->{sock};
    };
    my $start = sub {
        my @ch;
        my %pick;
        $pick{ $MAIN[int rand @MAIN] } = 1 for 1 .. 1 + int rand 3;
        @ch = sort keys %pick;
        push @ch, $SLOW if rand() < 0.1;
        if (rand() < 0.25) {
            my $tmp = "soak-tmp-$$-" . ++$seq;
            @ch = rand() < 0.5 ? ($tmp) : (@ch, $tmp);
            $st{tmp_channels}++;
        }
        my $path = '/events/' . join ',', @ch;
        my %h = (Host => 'localhost', Accept => 'text/event-stream');
        my $r = rand;
        if ($r < 0.2) {
            $h{'Last-Event-ID'} = $first_id;
            $st{replay}++;
        } elsif ($r < 0.25) {
            $path .= '?last_event_id=' . $first_id;
            $st{replay}++;
        }
        my $m = rand;
        my $mode = $m < 0.65 ? 'read' : $m < 0.85 ? 'stall' : $m < 0.95 ? 'early' : 'head';
        my $sock = tcp();
        unless ($sock) { $st{connect_fail}++; return }
        $st{connects}++;
        my $req = ($mode eq 'head' ? 'HEAD' : 'GET') . " $path HTTP/1.1\r\n"
                . join('', map { "$_: $h{$_}\r\n" } sort keys %h) . "\r\n";
        syswrite($sock, $req);
        my $c = { sock => $sock, mode => $mode, head => '', got_status => 0,
                  until => time() + ($mode eq 'stall' ? 2 + rand 8 : 0.3 + rand 5.7) };
        if ($mode eq 'early') {
            $st{early_close}++;
            $finish->($c, rand() < 0.5);
            return;
        }
        $st{stalled}++ if $mode eq 'stall';
        $st{head}++ if $mode eq 'head';
        return $c;
    };
    while (1) {
        if (time() - $last_check > 0.2) {
            $last_check = time();
            my $s = get_state();
            if ($s ne $state) {
                $state = $s;
                if ($state ne 'run') {
                    $finish->($_, 0) for grep { defined } @slots;
                    @slots = ();
                }
                ack('churn', $s);
                last if $state eq 'stop';
            }
        }
        if ($state ne 'run') { sleep 0.1; next }
        my $now = time();
        for my $i (0 .. $opt{churn} - 1) {
            my $c = $slots[$i];
            if ($c && $now >= $c->{until}) {
                $finish->($c, rand() < 0.5);
                $c = $slots[$i] = undef;
            }
            $slots[$i] = $start->() unless $c;
        }
        my @live = grep { defined && $_->{mode} ne 'stall' } @slots;
        my %by = map { fileno($_->{sock}) => $_ } @live;
        my $sel = IO::Select->new(map { $_->{sock} } @live);
        my @ready = $sel->count ? $sel->can_read(0.05) : do { sleep 0.05; () };
        for my $sock (@ready) {
            my $c = $by{ fileno $sock } or next;
            my $n = sysread($sock, my $buf, 262144);
            if (!$n) {
                # the server ended it (a reload, slow close, HEAD's end)
                $st{server_closed}++;
                close $sock;
                @slots = map { defined $_ && $_ == $c ? undef : $_ } @slots;
                next;
            }
            $st{bytes} += $n;
            unless ($c->{got_status}) {
                $c->{head} .= substr($buf, 0, 64);
                if ($c->{head} =~ m{^HTTP/1\.\d (\d{3})}) {
                    $st{status}{$1}++;
                    $c->{got_status} = 1;
                }
            }
        }
    }
    open my $sf, '>', "$WORK/churn.sum" or die;
    print $sf JSON::PP->new->canonical->encode(\%st);
    close $sf;
}

# ------------------------------------------------------------ sampling

my @SAMPLES;
my $T0 = time();
my $PHASE = 'warmup';
my %RELOADS = (count => 0, failed => 0, max_new => 0, max_old_gone => 0);
my @OLD;             # [pids, t] of the last reload, until they are gone

# the zone's size in kB, to find its mapping in /proc/<pid>/smaps
my $ZONE_KB = do {
    my ($n, $u) = $opt{zone} =~ /\A(\d+)([kKmM]?)\z/ or die "--zone: a size like 32m\n";
    $u = lc $u;
    $u eq 'm' ? $n * 1024 : $u eq 'k' ? $n : int($n / 1024);
};

# the Rss of the zone's shared mapping (rw-s /dev/zero, of the zone's size)
sub zone_rss {
    my ($pid) = @_;
    my $t = SSETest::_slurp("/proc/$pid/smaps") // return 0;
    while ($t =~ /^[0-9a-f]+-[0-9a-f]+ rw-s [^\n]*\n((?:[A-Z][^\n]*\n)*)/mg) {
        my $b = $1;
        return $1 if $b =~ /^Size:\s+$ZONE_KB kB/m && $b =~ /^Rss:\s+(\d+) kB/m;
    }
    return 0;
}

sub workers_mem {
    my %sum = (VmRSS => 0, RssAnon => 0, RssShmem => 0, RssFile => 0, zone => 0);
    my @w = $srv->worker_pids;
    for my $pid (@w) {
        my $m = proc_mem($pid) or next;
        $m->{zone} = zone_rss($pid);
        $sum{$_} += $m->{$_} for keys %sum;
    }
    return (\%sum, scalar @w);
}

sub sample {
    my ($label) = @_;
    my $j = $srv->status // {};
    my ($mem, $nw) = workers_mem();
    my $master = proc_mem($srv->pid) // { VmRSS => 0 };
    my $row = {
        t => time() - $T0, phase => $label // $PHASE,
        zone => $j->{zone_bytes_used} // -1, kept => $j->{events_kept} // -1,
        subs => $j->{subscribers} // -1, channels => $j->{channels} // -1,
        published => $j->{events_published} // -1, delivered => $j->{events_delivered} // -1,
        slow => $j->{slow_closed} // -1, evicted => $j->{history_evicted} // -1,
        rss => $mem->{VmRSS}, anon => $mem->{RssAnon}, shmem => $mem->{RssShmem},
        zrss => $mem->{zone},
        workers => $nw, old => scalar($srv->shutting_down_pids),
        master => $master->{VmRSS}, reloads => $RELOADS{count},
    };
    my $prev = $SAMPLES[-1];
    $row->{rate} = $prev && $row->{t} > $prev->{t} && $prev->{published} >= 0
        ? ($row->{published} - $prev->{published}) / ($row->{t} - $prev->{t}) : 0;
    push @SAMPLES, $row unless $label && $label =~ /^measure/;
    note(row_text($row)) if $opt{verbose} || !$label;
    return $row;
}

my @COLS = (
    ['t', 'time', '%6s', sub { fmt_t($_[0]{t}) }],
    ['phase', 'phase', '%-8s', sub { $_[0]{phase} }],
    ['zone', 'zone_used', '%10s', sub { $_[0]{zone} }],
    ['kept', 'kept', '%6s', sub { $_[0]{kept} }],
    ['subs', 'subs', '%5s', sub { $_[0]{subs} }],
    ['channels', 'chans', '%5s', sub { $_[0]{channels} }],
    ['rate', 'ev/s', '%5s', sub { sprintf '%.0f', $_[0]{rate} }],
    ['rss', 'rss_kB', '%7s', sub { $_[0]{rss} }],
    ['anon', 'anon_kB', '%7s', sub { $_[0]{anon} }],
    ['shmem', 'shm_kB', '%7s', sub { $_[0]{shmem} }],
    ['zrss', 'zone_kB', '%7s', sub { $_[0]{zrss} }],
    ['master', 'mast_kB', '%7s', sub { $_[0]{master} }],
    ['old', 'old', '%3s', sub { $_[0]{old} }],
    ['reloads', 'rl', '%3s', sub { $_[0]{reloads} }],
    ['slow', 'slow', '%5s', sub { $_[0]{slow} }],
    ['published', 'published', '%9s', sub { $_[0]{published} }],
);

sub fmt_t { my $s = int($_[0] + 0.5); sprintf '%d:%02d', int($s / 60), $s % 60 }
sub row_text { my ($r) = @_; join ' ', map { sprintf $_->[2], $_->[3]->($r) } @COLS }
sub head_text { join ' ', map { sprintf $_->[2], $_->[1] } @COLS }

# the median of 3 samples 2 s apart, per key
sub measure {
    my ($label) = @_;
    my @r;
    for my $i (1 .. 3) {
        push @r, sample("measure-$label");
        sleep 2 if $i < 3;
    }
    my %m;
    for my $k (keys %{ $r[0] }) {
        next if $k eq 'phase';
        my @v = sort { $a <=> $b } map { $_->{$k} } @r;
        $m{$k} = $v[1];
    }
    $m{phase} = $label;
    $m{all} = \@r;
    return \%m;
}

sub do_reload {
    my $t = time();
    my @old = $srv->worker_pids;
    my $ok = $srv->reload(timeout => 30);
    my $dt = time() - $t;
    $RELOADS{count}++;
    $RELOADS{failed}++ unless $ok;
    $RELOADS{max_new} = $dt if $dt > $RELOADS{max_new};
    push @OLD, [\@old, $t];
    vnote(sprintf 'reload %d: new workers in %.1fs%s', $RELOADS{count}, $dt, $ok ? '' : ' (FAILED)');
}

# the old workers of each reload: how long they took to go
sub watch_old {
    @OLD = grep {
        my ($pids, $t) = @$_;
        my $alive = grep { SSETest::Server::_alive($_) } @$pids;
        if (!$alive) {
            my $dt = time() - $t;
            $RELOADS{max_old_gone} = $dt if $dt > $RELOADS{max_old_gone};
        }
        $alive;
    } @OLD;
}

# run the loop until $until, sampling on the grid, reloading on the grid
sub run_until {
    my ($until, $reload_at) = @_;
    while (time() < $until) {
        if ($reload_at && time() >= $$reload_at) {
            do_reload();
            $$reload_at += $opt{reload_every};
        }
        if (time() >= $main::NEXT_SAMPLE) {
            sample();
            $main::NEXT_SAMPLE += $opt{sample_every};
            $main::NEXT_SAMPLE = time() + $opt{sample_every} if $main::NEXT_SAMPLE < time();
        }
        watch_old();
        my $reaped = waitpid(-1, WNOHANG);
        if ($reaped > 0) {
            my ($c) = grep { $_->[1] == $reaped } @CHILDREN;
            die "soak: child " . ($c ? $c->[0] : $reaped) . " exited early (status $?)\n";
        }
        sleep 0.2;
    }
}

# pause the load, fill, wait for the resumers alone, settle, measure
sub pause_and_measure {
    my ($label, $fill_k) = @_;
    $PHASE = 'pause';
    set_state('pause');
    wait_acks('pause', 60) or die "soak: the children did not pause\n";
    fill($fill_k);
    my $want = @RES_SETS;
    my $t = time();
    my $subs_ok = SSETest::wait_until(sub {
        watch_old();
        !@OLD && $srv->stat('subscribers') == $want
    }, 60, 0.5);
    note("$label: subscribers did not come back to $want (", $srv->stat('subscribers'), ')')
        unless $subs_ok;
    $PHASE = 'settle';
    run_until(time() + $opt{settle});
    my $m = measure($label);
    $m->{subs_ok} = $subs_ok;
    note(sprintf '%s measure: zone_bytes_used %d, workers VmRSS %d kB (anon %d, shmem %d), subscribers %d, events_kept %d, channels %d',
         $label, @$m{qw(zone rss anon shmem subs kept channels)});
    return $m;
}

# ------------------------------------------------------------------ run

set_state('run');
open $FILL_FH, '>', "$WORK/pub-f.log" or die "fill log: $!";
my $first_id = fill(0);
note(sprintf 'soak: %g min, %g events/s, %d resumers, %d churn subscribers, reload every %gs, sample every %gs',
     @opt{qw(minutes rate resumers churn reload_every sample_every)});

spawn('res', sub { resumers($first_id) });
for my $p (0 .. $opt{publishers} - 1) { spawn("pub$p", sub { publisher($p) }) }
spawn('churn', sub { churn($first_id) });

$SIG{INT} = $SIG{TERM} = sub {
    kill 'TERM', $_->[1] for @CHILDREN;
    die "soak: interrupted\n";
};

note(head_text());
$main::NEXT_SAMPLE = time();
run_until(time() + $opt{reload_every});                 # warm-up
my $start = pause_and_measure('start', 1);

$PHASE = 'soak';
set_state('run');
my $soak_t0 = time();
my $reload_at = $soak_t0;
$main::NEXT_SAMPLE = $soak_t0;
run_until($soak_t0 + $opt{minutes} * 60, \$reload_at);
my $end = pause_and_measure('end', 2);

set_state('stop');
wait_acks('stop', 60);
for my $c (@CHILDREN) {
    my $deadline = time() + 60;
    while (waitpid($c->[1], WNOHANG) == 0) {
        if (time() > $deadline) { kill 'KILL', $c->[1]; waitpid($c->[1], 0); last }
        sleep 0.1;
    }
    note("soak: $c->[0] exited with status $?") if $?;
}
close $FILL_FH;

# stop nginx ourselves (SSETest's stop() reports as a test)
my $log = stop_nginx();

# ------------------------------------------------------------- verdict

sub stop_nginx {
    my $pid = $srv->pid;
    my @children = $srv->child_pids;
    kill 'QUIT', $pid;
    my $gone = SSETest::wait_until(sub { !SSETest::Server::_alive($pid) }, 30, 0.1);
    unless ($gone) {
        note('nginx did not quit within 30s: TERM');
        kill 'TERM', $pid;
        SSETest::wait_until(sub { !SSETest::Server::_alive($pid) }, 5, 0.1)
            or kill 'KILL', $pid;
    }
    kill 'KILL', grep { SSETest::Server::_alive($_) } @children;
    $srv->{stopped} = 1;
    delete $SSETest::LIVE{"$srv"};
    $RELOADS{quit_clean} = $gone ? 1 : 0;
    return $srv->error_log;
}

sub read_json { my $t = SSETest::_slurp($_[0]); defined $t ? JSON::PP->new->decode($t) : {} }

# publisher records: $pub{"p c"} = [[n1, n2, status, id], ...] in order
my %pub;
my ($pub_reqs, $pub_fail, $pub_events) = (0, 0, 0);
my @pub_fail_ex;
for my $f (glob "$WORK/pub-*.log") {
    my ($p) = $f =~ /pub-(\w+)\.log$/;
    open my $fh, '<', $f or die;
    while (<$fh>) {
        my ($c, $n1, $n2, $st, $id) = split;
        # the fills' log: split below by fill
        my $pp = $p;
        push @{ $pub{"$pp $c"} }, [$n1, $n2, $st, $id];
        $pub_reqs++;
        $pub_events += $n2 - $n1 + 1;
        if ($st != 201) {
            $pub_fail++;
            push @pub_fail_ex, "$pp $c n=$n1..$n2 status $st" if @pub_fail_ex < 5;
        }
    }
    close $fh;
}
# the fills share one log: split it by fill (n restarts at 1 for each)
for my $c (@ALL) {
    my $list = delete $pub{"f $c"} or next;
    my $k = -1;
    for my $r (@$list) {
        $k++ if $r->[0] == 1;
        push @{ $pub{"f$k $c"} }, $r;
    }
}

my $res_sum = read_json("$WORK/res.sum");
my $churn_sum = read_json("$WORK/churn.sum");
my %pub_sum = map { ("pub$_" => read_json("$WORK/pub-$_.sum")) } 0 .. $opt{publishers} - 1;

my @RES;
for my $i (0 .. $#RES_SETS) {
    my %set = map { $_ => 1 } @{ $RES_SETS[$i] };
    my %v = (i => $i, chans => join(',', @{ $RES_SETS[$i] }), received => 0, expected => 0,
             missing => 0, dup => 0, unexpected => 0, wrong_id => 0, order => 0,
             foreign => 0, untagged => 0, uncertain_got => 0, ex => []);
    my $ex = sub { push @{ $v{ex} }, $_[0] if @{ $v{ex} } < 6 };
    # the received events, per (p c)
    my %got;
    my $prev;
    my $first;
    open my $fh, '<', "$WORK/res-$i.log" or die "res-$i.log: $!";
    while (<$fh>) {
        if (/^C (\S+)/) { $first //= $1; next }
        if (/^B/) { $v{untagged}++; next }
        next unless /^E (\S+) (\S+) (\S+) (\d+)/;
        my ($id, $p, $c, $n) = ($1, $2, $3, $4);
        $v{received}++;
        if (!SSETest::parse_id($id)) { $v{order}++; $ex->("bad id '$id'"); next }
        if (defined $prev && SSETest::id_cmp($id, $prev) <= 0) {
            $v{order}++;
            $ex->("id $id after $prev (p=$p c=$c n=$n)");
        }
        $prev = $id;
        unless ($set{$c}) { $v{foreign}++; $ex->("event of $c (not subscribed) id $id"); next }
        push @{ $got{"$p $c"} }, [$n, $id];
    }
    close $fh;
    $first //= $first_id;
    for my $key (sort keys %pub) {
        my ($p, $c) = split / /, $key;
        next unless $set{$c};
        my %seen;
        my %rid;
        for my $g (@{ $got{$key} || [] }) {
            my ($n, $id) = @$g;
            $v{dup}++, $ex->("p=" . ($key =~ s| | c=|r) . " n=$n twice (id $id)") if $seen{$n}++;
            $rid{$n} //= $id;
        }
        my $prev_rid;       # the id of the request before, on this (p c)
        for my $r (@{ $pub{$key} }) {
            my ($n1, $n2, $st, $rid) = @$r;
            my $below = $prev_rid;
            $prev_rid = $rid if SSETest::parse_id($rid);
            if ($st != 201) {
                for my $n ($n1 .. $n2) { $v{uncertain_got}++ if $seen{$n} }
                delete @seen{ $n1 .. $n2 };
                next;
            }
            if (SSETest::id_cmp($rid, $first) <= 0) {
                for my $n ($n1 .. $n2) {
                    next unless $seen{$n};
                    $v{unexpected}++;
                    $ex->("p=" . ($key =~ s| | c=|r) . " n=$n (id $rid{$n}) is not after the first Last-Event-ID $first");
                }
                delete @seen{ $n1 .. $n2 };
                next;
            }
            for my $n ($n1 .. $n2) {
                $v{expected}++;
                unless ($seen{$n}) {
                    $v{missing}++;
                    $ex->("p=" . ($key =~ s| | c=|r) . " n=$n missing (published in a request answered $rid)");
                    next;
                }
                delete $seen{$n};
                # a batch's earlier events: between the request before and its last
                my $ok = $n == $n2 ? $rid{$n} eq $rid
                       : SSETest::id_cmp($rid{$n}, $rid) < 0
                         && (!defined $below || SSETest::id_cmp($rid{$n}, $below) > 0);
                unless ($ok) {
                    $v{wrong_id}++;
                    $ex->("p=" . ($key =~ s| | c=|r) . " n=$n got id $rid{$n}, publish answered $rid" . ($n == $n2 ? '' : ' (a batch: an id below it, above ' . ($below // '-') . ')'));
                }
            }
        }
        for my $n (sort { $a <=> $b } keys %seen) {
            $v{unexpected}++;
            $ex->("p=" . ($key =~ s| | c=|r) . " n=$n received but never published");
        }
    }
    my $rs = $res_sum->{$i} || {};
    $v{$_} = $rs->{$_} // 0 for qw(connects server_ends own_fin own_rst bad_status corrupt);
    $ex->($_) for @{ $rs->{corrupt_ex} || [] };
    push @RES, \%v;
}

my @fatal = grep { /\[(?:alert|crit|emerg)\]|exited on signal|segmentation/i } split /\n/, $log;
my %errs;
for (split /\n/, $log) {
    next unless /\[error\] \d+#\d+: (?:\*\d+ )?(.*?)(?:, client: .*)?$/;
    (my $k = $1) =~ s/\d+/N/g;
    $errs{$k}++;
}

# ---------------------------------------------------------------- report

my $OUT = '';
sub out { $OUT .= join('', @_) . "\n" }

sub chart {
    my ($title, $key, $scale, $unit) = @_;
    my @pts = grep { $_->{$key} >= 0 } @SAMPLES;
    return unless @pts > 1;
    my $W = 72;
    my $H = 10;
    my @v;
    my $per = @pts / $W < 1 ? 1 : @pts / $W;
    for (my $x = 0; $x < @pts; $x += $per) {
        my @b = @pts[int $x .. (int($x + $per) - 1 < $#pts ? int($x + $per) - 1 : $#pts)];
        my $max = 0;
        $max = $_->{$key} > $max ? $_->{$key} : $max for @b;
        push @v, $max / $scale;
    }
    my ($lo, $hi) = (1e300, -1e300);
    for (@v) { $lo = $_ if $_ < $lo; $hi = $_ if $_ > $hi }
    if ($hi - $lo < 1e-9) { $hi += 0.5; $lo -= 0.5 }
    out('');
    out("$title ($unit; each column the highest of ", sprintf('%.0f', $per * $opt{sample_every}), 's)');
    for my $row (reverse 0 .. $H - 1) {
        my $y = $lo + ($hi - $lo) * $row / ($H - 1);
        my $line = sprintf '%10.2f |', $y;
        for my $val (@v) {
            my $lvl = int(($val - $lo) / ($hi - $lo) * ($H - 1) + 0.5);
            $line .= $lvl == $row ? '*' : $lvl > $row ? '|' : ' ';
        }
        out($line);
    }
    out(' ' x 11, '+', '-' x scalar(@v));
    out(' ' x 12, fmt_t($pts[0]{t}), ' ' x (@v - 10 > 1 ? @v - 10 : 1), fmt_t($pts[-1]{t}));
}

my $tol = $opt{tolerance} / 100;
my @verdict;
sub check { my ($ok, $text) = @_; push @verdict, [$ok ? 1 : 0, $text]; }
sub pct { $_[1] ? 100 * ($_[0] - $_[1]) / $_[1] : 0 }

out('soak of ngx_http_sse_module: ', strftime('%Y-%m-%d %H:%M:%S', localtime($T0)));
out(sprintf 'nginx %s, 2 workers, sse_zone %s, sse_history %d, sse_history_ttl 10m, sse_retry 1s',
    $srv->{bin}, $opt{zone}, $opt{history});
out(sprintf 'load: %g min soak after %gs warm-up; %d publishers at %g events/s in all (1 in 6 requests a batch of 2-20, sizes 24 B-4 KB; + 1/s on %s);',
    $opt{minutes}, $opt{reload_every}, $opt{publishers}, $opt{rate}, $SLOW);
out(sprintf '      %d resuming subscribers, %d churn subscribers at a time; a reload every %gs; a sample every %gs',
    scalar(@RES_SETS), $opt{churn}, $opt{reload_every}, $opt{sample_every});
out('');
out('The curve (rss/anon/shm: the current workers\' VmRSS/RssAnon/RssShmem summed; zone_kB: the part of shm that is');
out('the zone\'s mapping; mast: the master\'s VmRSS; old: workers shutting down; rl: reloads so far; slow: slow_closed):');
out(head_text());
out(row_text($_)) for @SAMPLES;
chart('zone_bytes_used', 'zone', 1048576, 'MiB');
chart('workers\' VmRSS (sum)', 'rss', 1024, 'MiB');
chart('workers\' RssAnon (sum; their own memory, without the zone\'s pages)', 'anon', 1024, 'MiB');
out('');
out('Measures (median of 3 samples 2 s apart, after the pause, the fill and the settle period):');
out(sprintf '  %-6s %12s %10s %10s %10s %10s %10s %5s %6s %5s', '', 'zone_used', 'rss_kB', 'anon_kB', 'shm_kB', 'zone_kB', 'master_kB', 'subs', 'kept', 'chans');
for my $m ($start, $end) {
    out(sprintf '  %-6s %12d %10d %10d %10d %10d %10d %5d %6d %5d', $m->{phase},
        @$m{qw(zone rss anon shmem zrss master subs kept channels)});
}
out(sprintf '  %-6s %+11.2f%% %+9.2f%% %+9.2f%% %+9.2f%% %+9.2f%% %+9.2f%%', 'change',
    pct($end->{zone}, $start->{zone}), pct($end->{rss}, $start->{rss}),
    pct($end->{anon}, $start->{anon}), pct($end->{shmem}, $start->{shmem}),
    pct($end->{zrss}, $start->{zrss}), pct($end->{master}, $start->{master}));
out('');
out('Resuming subscribers (expected: published with a 201 after the first Last-Event-ID):');
out(sprintf '  %-2s %-40s %8s %8s %7s %4s %5s %5s %5s %5s %5s %5s %5s',
    '#', 'channels', 'expected', 'received', 'missing', 'dup', 'unexp', 'badid', 'order', 'corr', 'conn', 'srvend', 'own');
for my $v (@RES) {
    out(sprintf '  %-2d %-40s %8d %8d %7d %4d %5d %5d %5d %5d %5d %5d %5d',
        $v->{i}, $v->{chans}, $v->{expected}, $v->{received}, $v->{missing}, $v->{dup},
        $v->{unexpected} + $v->{foreign}, $v->{wrong_id}, $v->{order},
        $v->{corrupt} + $v->{untagged}, $v->{connects}, $v->{server_ends},
        $v->{own_fin} + $v->{own_rst});
    out("       $_") for @{ $v->{ex} };
}
out('');
out(sprintf 'Publishing: %d requests, %d events (fills included), %d not answered 201%s',
    $pub_reqs, $pub_events, $pub_fail, @pub_fail_ex ? ': ' . join('; ', @pub_fail_ex) : '');
out('Churn: ', join ', ', map {
    my $v = $churn_sum->{$_};
    "$_ " . (ref $v ? join('/', map { "$_:$v->{$_}" } sort keys %$v) : $v)
} sort keys %$churn_sum);
out(sprintf 'Reloads: %d (%d failed), new workers within %.1fs, old workers gone within %.1fs; nginx quit %s',
    $RELOADS{count}, $RELOADS{failed}, $RELOADS{max_new}, $RELOADS{max_old_gone},
    $RELOADS{quit_clean} ? 'cleanly' : 'NOT cleanly');
{
    my ($m1) = grep { $_->{phase} eq 'soak' && $_->{reloads} >= 1 && $_->{master} > 0 } @SAMPLES;
    out(sprintf 'Master VmRSS (not judged): %d kB at the start measure, %d kB after the first soak reload, %d kB at the end measure (%d reloads)',
        $start->{master}, $m1 ? $m1->{master} : -1, $end->{master}, $RELOADS{count});
}
out('error.log [error] lines: ', %errs ? join('; ', map { "$errs{$_} x $_" } sort { $errs{$b} <=> $errs{$a} } keys %errs) : 'none');

check(abs($end->{zone} - $start->{zone}) <= $tol * $start->{zone},
      sprintf('zone_bytes_used end %d vs start %d: %+.2f%% (rule: within %g%%)',
              $end->{zone}, $start->{zone}, pct($end->{zone}, $start->{zone}), $opt{tolerance}));
check(abs($end->{anon} - $start->{anon}) <= $tol * $start->{anon},
      sprintf('workers\' own memory (RssAnon) end %d kB vs start %d kB: %+.2f%% (rule: within %g%%); '
              . 'their VmRSS %d kB vs %d kB (%+.2f%%) also counts the zone pages they touched (the zone mapping\'s Rss %d kB vs %d kB)',
              $end->{anon}, $start->{anon}, pct($end->{anon}, $start->{anon}), $opt{tolerance},
              $end->{rss}, $start->{rss}, pct($end->{rss}, $start->{rss}), $end->{zrss}, $start->{zrss}));
check($start->{subs_ok} && $end->{subs_ok} && $end->{subs} == $start->{subs},
      "subscribers end $end->{subs} vs start $start->{subs} (rule: equal, the resumers alone)");
check($end->{kept} == $start->{kept}, "events_kept end $end->{kept} vs start $start->{kept} (rule: equal)");
check($end->{channels} == $start->{channels}, "channels end $end->{channels} vs start $start->{channels} (rule: equal: the throw-away channels are gone)");
my %tot;
for my $v (@RES) { $tot{$_} += $v->{$_} for qw(expected received missing dup unexpected foreign wrong_id order corrupt untagged) }
check(!$tot{missing} && !$tot{dup} && !$tot{unexpected} && !$tot{foreign} && !$tot{wrong_id}
      && !$tot{order} && !$tot{corrupt} && !$tot{untagged} && $tot{expected} > 0,
      sprintf('resumers: %d events expected, %d received; missing %d, duplicated %d, unexpected %d, wrong id %d, out of order %d, corrupt %d (rule: all 0)',
              $tot{expected}, $tot{received}, $tot{missing}, $tot{dup}, $tot{unexpected} + $tot{foreign},
              $tot{wrong_id}, $tot{order}, $tot{corrupt} + $tot{untagged}));
check(!$pub_fail, "publishes not answered 201: $pub_fail (rule: 0)");
check(!@fatal && $RELOADS{quit_clean} && !$RELOADS{failed},
      sprintf('error.log: %d alert/crit/emerg/crash lines; reloads failed: %d; quit %s (rule: none, none, clean)',
              scalar @fatal, $RELOADS{failed}, $RELOADS{quit_clean} ? 'clean' : 'not clean'));
out("  $_") for @fatal[0 .. ($#fatal > 9 ? 9 : $#fatal)];

my $pass = !grep { !$_->[0] } @verdict;
out('');
out('Verdict: ', $pass ? 'PASS' : 'FAIL');
out(sprintf '  [%s] %s', $_->[0] ? 'ok' : 'FAIL', $_->[1]) for @verdict;

print $OUT;

make_path($opt{out});
my $stamp = strftime('%Y%m%d-%H%M%S', localtime($T0));
my $base = "$opt{out}/soak-$stamp";
open my $rf, '>', "$base.txt" or die "$base.txt: $!";
print $rf $OUT;
close $rf;
open my $cf, '>', "$base.csv" or die "$base.csv: $!";
my @keys = qw(t phase zone kept subs channels rate rss anon shmem zrss master workers old reloads slow evicted published delivered);
print $cf join(',', @keys), "\n";
for my $r (@SAMPLES) { print $cf join(',', map { $_ eq 'rate' || $_ eq 't' ? sprintf('%.1f', $r->{$_}) : $r->{$_} } @keys), "\n" }
close $cf;
open my $lf, '>', "$base.error.log" or die;
print $lf $log;
close $lf;
note("written: $base.txt, $base.csv, $base.error.log", $opt{keep} ? ", work files in $WORK" : '');
exit($pass ? 0 : 1);

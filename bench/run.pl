#!/usr/bin/perl
# The side-by-side benchmark: ngx_http_sse_module against nchan, same
# machine, same run, same scenarios, same load client (bench/ssebench).
#
#   bench/run.pl                      all five scenarios, full size
#   bench/run.pl --quick              the same scenarios, small (make test)
#   bench/run.pl --scenarios 1,3      some of them
#   bench/run.pl --targets sse        only our module
#
# For each scenario and each target a fresh nginx is started on a free
# loopback port (equivalent configs: same workers, same history, same
# shared memory), ssebench runs against it, and nginx is stopped.  The
# table of figures, with the ratio ours/nchan, is printed at the end and
# written with the raw JSON to --out (default build/bench/).
#
# Environment: SSE_MODULE (our .so), NGINX_BIN (default /usr/sbin/nginx),
# NCHAN_MODULE (default /usr/lib/nginx/modules/ngx_nchan_module.so),
# NCHAN_NGINX_BIN (the nginx nchan runs in, default /usr/sbin/nginx).
# Perl core modules only.

use strict;
use warnings;

use Getopt::Long;
use JSON::PP;
use POSIX qw(strftime WNOHANG);
use Time::HiRes qw(time sleep);
use File::Path qw(make_path remove_tree);
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use IO::Socket::INET;

my $BENCH = dirname(abs_path(__FILE__));
my $REPO  = dirname($BENCH);

my %opt = (
    scenarios => '1,2,3,4,5',
    targets   => 'sse,nchan',
    out       => "$REPO/build/bench",
    client    => "$BENCH/ssebench",
    quick     => 0,
    verbose   => 0,
);

GetOptions(
    'scenarios=s' => \$opt{scenarios},
    'targets=s'   => \$opt{targets},
    'out=s'       => \$opt{out},
    'client=s'    => \$opt{client},
    'quick'       => \$opt{quick},
    'verbose|v'   => \$opt{verbose},
) or die "usage: $0 [--quick] [--scenarios 1,2,...] [--targets sse,nchan] [--out DIR]\n";

my $NGINX = $ENV{NGINX_BIN} || '/usr/sbin/nginx';
my $SSE_SO = $ENV{SSE_MODULE} || "$REPO/build/modules/ngx_http_sse_module.so";
my $NCHAN_SO = $ENV{NCHAN_MODULE} || '/usr/lib/nginx/modules/ngx_nchan_module.so';
# nchan's .so loads only into the nginx it was built for (Debian's), even
# when ours runs in another (make bench NGINX_SRC=...)
my $NCHAN_NGINX = $ENV{NCHAN_NGINX_BIN} || '/usr/sbin/nginx';

die "load client $opt{client} not found: build it with make -C bench\n"
    unless -x $opt{client};

# ---------------------------------------------------------------- scenarios
#
# workers: nginx worker processes (the same for both targets); a process
# holds at most 20,000 files here, so big subscriber counts need several
# workers, and several client processes (procs) from several source
# addresses (addrs: 127.0.0.1 .. 127.0.0.K).  12,500 connections per
# source address at most: the kernel's search for a free local port slows
# down as the 28,000 ports of one address toward one server port fill up.
# The publisher keeps up to pub_conns POSTs in flight (the same for both
# targets, but in scenario 3 where nchan, without a batch publish, gets
# more connections).

my @SCENARIOS = (
    {
        id => 1, name => '10,000 subscribers, 1 channel, 100 events/s, 64 B',
        full  => { subs => 10000, channels => 1, rate => 100, events => 1000,
                   size => 64, batch => 1, pub_conns => 2, workers => 2,
                   procs => 1, addrs => 1 },
        quick => { subs => 300, channels => 1, rate => 100, events => 100,
                   size => 64, batch => 1, pub_conns => 2, workers => 2,
                   procs => 1, addrs => 1 },
    },
    {
        id => 2, name => '10,000 subscribers, 1,000 channels, as fast as possible',
        full  => { subs => 10000, channels => 1000, rate => 0, events => 50000,
                   size => 64, batch => 1, pub_conns => 8, workers => 2,
                   procs => 1, addrs => 1 },
        quick => { subs => 500, channels => 50, rate => 0, events => 2000,
                   size => 64, batch => 1, pub_conns => 4, workers => 2,
                   procs => 1, addrs => 1 },
    },
    {
        id => 3, name => '1,000 subscribers, 1 channel, batch publishing as fast as possible',
        # nchan has no batch publish: one event per POST, more connections
        full  => { subs => 1000, channels => 1, rate => 0, events => 10000,
                   size => 64, batch => 100, nchan_batch => 1,
                   pub_conns => 2, nchan_pub_conns => 8, workers => 2,
                   procs => 1, addrs => 1 },
        quick => { subs => 100, channels => 1, rate => 0, events => 2000,
                   size => 64, batch => 20, nchan_batch => 1,
                   pub_conns => 2, nchan_pub_conns => 4, workers => 2,
                   procs => 1, addrs => 1 },
    },
    {
        id => 4, name => 'idle memory: 50,000 subscribers held',
        full  => { subs => 50000, channels => 1, rate => 1, events => 3,
                   size => 64, batch => 1, pub_conns => 1, workers => 4,
                   procs => 4, addrs => 4, hold => 10 },
        quick => { subs => 2000, channels => 1, rate => 2, events => 2,
                   size => 64, batch => 1, pub_conns => 1, workers => 2,
                   procs => 1, addrs => 1, hold => 2 },
    },
    {
        id => 5, name => 'most subscribers held, a broadcast reaching all',
        full  => { subs => 100000, channels => 1, rate => 0.5, events => 3,
                   size => 64, batch => 1, pub_conns => 1, workers => 6,
                   procs => 6, addrs => 8, hold => 2 },
        quick => { subs => 3000, channels => 1, rate => 2, events => 2,
                   size => 64, batch => 1, pub_conns => 1, workers => 2,
                   procs => 2, addrs => 2, hold => 0 },
    },
);

my %want = map { $_ => 1 } split /,/, $opt{scenarios};
my @targets = split /,/, $opt{targets};
for my $t (@targets) {
    die "unknown target $t (sse, nchan)\n" unless $t eq 'sse' || $t eq 'nchan';
}
die "our module $SSE_SO not found (make build)\n"
    if grep({ $_ eq 'sse' } @targets) && !-f $SSE_SO;
die "nchan $NCHAN_SO not found (apt-get install libnginx-mod-nchan)\n"
    if grep({ $_ eq 'nchan' } @targets) && !-f $NCHAN_SO;

make_path($opt{out});
my $stamp = strftime('%Y%m%d-%H%M%S', localtime);
my $size = $opt{quick} ? 'quick' : 'full';

sub say_err { print STDERR "bench: @_\n" }

# ---------------------------------------------------------------- nginx

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1, ReuseAddr => 1)
        or die "no free port: $!";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    my $t = <$fh>;
    return $t;
}

sub nginx_conf {
    my ($target, $dir, $port, $p) = @_;

    my $conns = 19800;
    my $user = $> == 0 ? "user root;\n" : '';
    my ($load, $http, $locations);

    if ($target eq 'sse') {
        $load = "load_module $SSE_SO;";
        $http = "sse_zone sse:64m;\n    sse_history 100;\n    sse_history_ttl 1h;";
        $locations = <<'EOL';
        location ~ ^/events/(.+)$ { sse_stream $1; }
        location ~ ^/pub/(.+)$ { sse_publish $1; }
EOL
    } else {
        $load = "load_module $NCHAN_SO;";
        $http = "nchan_max_reserved_memory 64M;";
        $locations = <<'EOL';
        location ~ ^/events/(.+)$ {
            nchan_subscriber eventsource;
            nchan_channel_id $1;
            nchan_subscriber_first_message newest;
        }
        location ~ ^/pub/(.+)$ {
            nchan_publisher;
            nchan_channel_id $1;
            nchan_message_buffer_length 100;
            nchan_message_timeout 1h;
        }
EOL
    }

    return <<"EOC";
$load
${user}worker_processes $p->{workers};
worker_rlimit_nofile 20000;
pid $dir/nginx.pid;
error_log $dir/error.log warn;

events {
    worker_connections $conns;
    accept_mutex off;
}

http {
    access_log off;
    client_body_temp_path $dir/tmp;
    client_max_body_size 16m;
    client_body_buffer_size 1m;
    $http

    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
$locations
    }
}
EOC
}

sub start_nginx {
    my ($target, $p) = @_;

    my $dir = "$opt{out}/run-$target";
    remove_tree($dir);
    make_path("$dir/tmp");
    my $port = free_port();

    open my $fh, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!";
    print $fh nginx_conf($target, $dir, $port, $p);
    close $fh;

    my $bin = $target eq 'nchan' ? $NCHAN_NGINX : $NGINX;
    my $out = qx{$bin -p $dir/ -c $dir/nginx.conf -e $dir/error.log 2>&1};
    die "nginx ($target) did not start: $out\n" . (slurp("$dir/error.log") // '')
        if $?;

    my $pid;
    for (1 .. 100) {
        my $t = slurp("$dir/nginx.pid");
        last if defined $t && (($pid) = $t =~ /(\d+)/);
        sleep 0.05;
    }
    die "nginx ($target) wrote no pid file\n" unless $pid;

    for (1 .. 200) {
        last if scalar(worker_pids($pid)) >= $p->{workers};
        sleep 0.05;
    }

    return { target => $target, dir => $dir, port => $port, pid => $pid };
}

sub worker_pids {
    my ($master) = @_;
    my @w;
    opendir my $d, '/proc' or return;
    for my $e (readdir $d) {
        next unless $e =~ /^\d+$/;
        my $st = slurp("/proc/$e/status") // next;
        push @w, $e if $st =~ /^PPid:\s+$master$/m;
    }
    return @w;
}

sub stop_nginx {
    my ($srv) = @_;
    my $pid = $srv->{pid};
    return unless kill 0, $pid;
    kill 'QUIT', $pid;
    for (1 .. 100) {
        return unless kill 0, $pid;
        sleep 0.1;
    }
    say_err("nginx $pid did not quit in 10 s, terminating it");
    kill 'TERM', $pid;
    for (1 .. 50) {
        return unless kill 0, $pid;
        sleep 0.1;
    }
    kill 'KILL', $pid;
}

# ---------------------------------------------------------------- a run

sub run_client {
    my ($srv, $p, $sc) = @_;

    my $t = $srv->{target};
    my $batch = $t eq 'nchan' && defined $p->{nchan_batch} ? $p->{nchan_batch} : $p->{batch};
    my $conns = $t eq 'nchan' && defined $p->{nchan_pub_conns} ? $p->{nchan_pub_conns} : $p->{pub_conns};

    my @cmd = ($opt{client},
        '--port', $srv->{port},
        '--sub-prefix', '/events/', '--pub-prefix', '/pub/',
        '--subs', $p->{subs}, '--channels', $p->{channels},
        '--procs', $p->{procs}, '--addrs', $p->{addrs},
        '--events', $p->{events}, '--rate', $p->{rate},
        '--size', $p->{size}, '--batch', $batch,
        '--pub-conns', $conns,
        '--hold', $p->{hold} // 0,
        '--pidfile', "$srv->{dir}/nginx.pid",
        '--label', "s$sc->{id}-$t");
    push @cmd, '-v' if $opt{verbose};

    say_err("scenario $sc->{id} $t: @cmd[1 .. $#cmd]") if $opt{verbose};

    my $t0 = time();
    my $out = '';
    open my $fh, '-|', @cmd or die "cannot run $opt{client}: $!";
    { local $/; $out = <$fh> // ''; }
    close $fh;
    my $rc = $? >> 8;

    my $r = eval { decode_json($out) };
    if (!$r) {
        return { fatal => "ssebench exit $rc, no JSON: " . substr($out, 0, 300) };
    }
    $r->{wall_s} = time() - $t0;
    $r->{client_exit} = $rc;
    return $r;
}

# ---------------------------------------------------------------- main

my %results;
my @ran;

for my $sc (@SCENARIOS) {
    next unless $want{ $sc->{id} };
    my $p = $sc->{$size};
    push @ran, $sc;

    for my $t (@targets) {
        say_err(sprintf "scenario %d (%s) against %s ...", $sc->{id}, $sc->{name}, $t);
        my $srv = start_nginx($t, $p);
        my $r = eval { run_client($srv, $p, $sc) } // { fatal => "$@" };
        stop_nginx($srv);

        my $log = slurp("$srv->{dir}/error.log") // '';
        # each kind of alert once, with how often it was logged
        my (%n, @bad);
        for my $l (grep { /\[(alert|crit|emerg)\]|exited on signal/ } split /\n/, $log) {
            (my $k = $l) =~ s/^\S+ \S+ //;
            $k =~ s/\d+#\d+: //;
            $k =~ s/\d+/N/g;
            push @bad, $k unless $n{$k}++;
        }
        $r->{error_log} = [ map { "$_ (x$n{$_})" } @bad[0 .. ($#bad < 9 ? $#bad : 9)] ] if @bad;
        $r->{params} = $p;
        $results{ $sc->{id} }{$t} = $r;

        say_err(sprintf "  %s: %s connected, %s deliveries/s, p99 %s ms, missing %s%s",
            $t, $r->{connected} // '?', fmt_num($r->{deliveries_per_s}),
            fmt_ms($r->{latency_us}{p99}), $r->{missing} // '?',
            $r->{fatal} ? ", FATAL: $r->{fatal}" : '');
    }
}

my $report = {
    when    => strftime('%Y-%m-%d %H:%M:%S %z', localtime),
    size    => $size,
    machine => machine(),
    results => \%results,
};

my $json_file = "$opt{out}/bench-$size-$stamp.json";
open my $jf, '>', $json_file or die "$json_file: $!";
print $jf JSON::PP->new->canonical->pretty->encode($report);
close $jf;

my $table = table(\@ran, \%results);
my $md_file = "$opt{out}/bench-$size-$stamp.md";
open my $mf, '>', $md_file or die "$md_file: $!";
print $mf $table;
close $mf;

print $table;
print "\nraw figures: $json_file\n";

# a run of ours that could not complete fails; nchan's failures are figures
exit(grep({ $results{ $_->{id} }{sse} && $results{ $_->{id} }{sse}{fatal} } @ran) ? 1 : 0);

# ---------------------------------------------------------------- report

sub machine {
    my $cpu = (slurp('/proc/cpuinfo') // '') =~ /^model name\s*:\s*(.*)$/m ? $1 : '?';
    my $ncpu = () = (slurp('/proc/cpuinfo') // '') =~ /^processor\s*:/mg;
    my $mem = (slurp('/proc/meminfo') // '') =~ /^MemTotal:\s*(\d+)/m ? int($1 / 1048576 + 0.5) : '?';
    my $kernel = (POSIX::uname())[2];
    my $os = (slurp('/etc/os-release') // '') =~ /^PRETTY_NAME="?([^"\n]*)/m ? $1 : '?';
    my $nginx = qx{$NGINX -v 2>&1};
    chomp $nginx;
    $nginx =~ s/^nginx version: //;
    my $nchan = qx{dpkg-query -W -f='\${Version}' libnginx-mod-nchan 2>/dev/null} || '?';
    return { cpu => "$cpu, $ncpu cores", memory_gb => $mem, kernel => $kernel,
             os => $os, nginx => $nginx, nchan => $nchan };
}

sub fmt_num {
    my ($v) = @_;
    return '—' unless defined $v;
    return sprintf('%.0f', $v) if $v >= 100;
    return sprintf('%.2f', $v);
}

sub fmt_ms {
    my ($us) = @_;
    return '—' unless defined $us;
    return sprintf('%.1f', $us / 1000) if $us >= 10000;
    return sprintf('%.2f', $us / 1000);
}

sub fmt_kb { my ($b) = @_; defined $b ? sprintf('%.2f', $b / 1024) : '—' }

sub ratio {
    my ($a, $b) = @_;
    return '—' unless defined $a && defined $b && $b != 0;
    return sprintf('%.2f', $a / $b);
}

# the figures of one scenario: [label, getter, formatter, goal]
# a goal is [op, value] on the ratio ours/nchan, plus optional absolute
sub rows_for {
    my ($id) = @_;
    my @rows = (
        ['subscribers connected', sub { $_[0]{connected} }, \&fmt_num],
        ['events published/s', sub { $_[0]{publish_s} ? $_[0]{published} / $_[0]{publish_s} : undef }, \&fmt_num],
        ['deliveries/s', sub { $_[0]{deliveries_per_s} }, \&fmt_num,
            ($id <= 3 ? ['>=', 1.5] : undef)],
        ['latency p50 (ms)', sub { $_[0]{latency_us}{p50} }, \&fmt_ms],
        ['latency p90 (ms)', sub { $_[0]{latency_us}{p90} }, \&fmt_ms],
        ['latency p99 (ms)', sub { $_[0]{latency_us}{p99} }, \&fmt_ms,
            ($id == 1 ? ['<=', 1, 'p99 < 50 ms', sub { ($_[0]{latency_us}{p99} // 1e12) < 50000 }] : undef)],
        ['latency max (ms)', sub { $_[0]{latency_us}{max} }, \&fmt_ms,
            ($id == 5 ? [undef, undef, 'under 0.5 s', sub { ($_[0]{latency_us}{max} // 1e12) < 500000 }] : undef)],
        ['server CPU per delivery (µs)', sub { $_[0]{server_cpu_us_per_delivery} }, \&fmt_num,
            ($id <= 3 ? ['<=', 0.5] : undef)],
        ['server CPU (s)', sub { $_[0]{server_cpu_s} }, \&fmt_num],
        # measured after a hold (scenarios 4, 5), not right after connecting
        ($id >= 4 ? ['server RSS per subscriber (KB)', sub { $_[0]{rss_per_sub_bytes} }, \&fmt_kb,
            ($id == 4 ? ['<=', 0.5] : undef)] : undef),
        ['client CPU (s)', sub { $_[0]{client_cpu_s} }, \&fmt_num],
        ['missing', sub { $_[0]{missing} }, \&fmt_num,
            [undef, undef, 'none', sub { defined $_[0]{missing} && $_[0]{missing} == 0 }]],
        ['duplicated', sub { $_[0]{duplicated} }, \&fmt_num],
        ['out of order', sub { $_[0]{out_of_order} }, \&fmt_num],
    );
    return grep { defined } @rows;
}

sub table {
    my ($ran, $res) = @_;
    my $m = machine();
    my $t = "Benchmark ($size), " . strftime('%Y-%m-%d', localtime)
          . ": $m->{cpu}, $m->{memory_gb} GB, $m->{os}, kernel $m->{kernel}, "
          . "nginx $m->{nginx}, nchan $m->{nchan}.\n"
          . "Load client and servers share the machine's cores.\n\n";

    for my $sc (@$ran) {
        my $p = $sc->{$size};
        my $ours = $res->{ $sc->{id} }{sse} // {};
        my $them = $res->{ $sc->{id} }{nchan} // {};
        $t .= sprintf "### Scenario %d: %s\n\n", $sc->{id}, $sc->{name};
        $t .= sprintf "%d subscribers, %d channel(s), %d events%s, %d B, "
                    . "batch %d (nchan %d), %d nginx workers\n\n",
            $p->{subs}, $p->{channels}, $p->{events},
            ($p->{rate} ? " at $p->{rate}/s" : ' as fast as possible'),
            $p->{size}, $p->{batch}, $p->{nchan_batch} // $p->{batch},
            $p->{workers};
        $t .= "| figure | ours | nchan | ours/nchan | goal |\n";
        $t .= "|---|---:|---:|---:|---|\n";
        for my $row (rows_for($sc->{id})) {
            my ($label, $get, $fmt, $goal) = @$row;
            my ($a, $b) = (eval { $get->($ours) }, eval { $get->($them) });
            my $r = ratio($a, $b);
            my $g = '';
            if ($goal) {
                my ($op, $v, $abs_label, $abs_ok) = @$goal;
                my @parts;
                if ($op) {
                    my $ok = $r ne '—' && ($op eq '>=' ? $r >= $v : $r <= $v);
                    push @parts, sprintf('ratio %s %s: %s', $op eq '>=' ? '≥' : '≤', $v,
                                         $r eq '—' ? 'n/a' : $ok ? 'met' : 'NOT met');
                }
                if ($abs_label) {
                    push @parts, sprintf('%s: %s', $abs_label, $abs_ok->($ours) ? 'met' : 'NOT met');
                }
                $g = join '; ', @parts;
            }
            $t .= sprintf "| %s | %s | %s | %s | %s |\n", $label, $fmt->($a), $fmt->($b), $r, $g;
        }
        for my $tg (['ours', $ours], ['nchan', $them]) {
            $t .= "\n$tg->[0]: FATAL: $tg->[1]{fatal}\n" if $tg->[1]{fatal};
            $t .= "\n$tg->[0]: error.log: " . join(' | ', @{ $tg->[1]{error_log} }) . "\n"
                if $tg->[1]{error_log};
        }
        $t .= "\n";
    }
    return $t;
}

#!/usr/bin/perl
# The side-by-side benchmark: ngx_http_sse_module against nchan, same
# machine, same run, same scenarios, same load client (bench/ssebench).
#
#   bench/run.pl                      every scenario, full size
#   bench/run.pl --quick              the same scenarios, small (make test)
#   bench/run.pl --scenarios 1,3      some of them
#   bench/run.pl --targets sse        only our module
#   bench/run.pl --scenarios 6 --local-workers 4
#                                     scenario 6's local reference with 4
#                                     workers instead of 2
#   bench/run.pl --scenarios 7        both parts of scenario 7 (7a, 7b)
#   --client PATH, --h2client PATH    other builds of ssebench, h2bench
#
# For each scenario and each target a fresh nginx is started on a free
# loopback port (equivalent configs: same workers, same history, same
# shared memory), ssebench runs against it, and nginx is stopped.  The
# table of figures, with the ratio ours/nchan, is printed at the end and
# written with the raw JSON to --out (default build/bench/).
#
# Scenario 6 is ours alone, Redis mode against local mode: a redis-server
# of its own (loopback, free port, no persistence), two nginx nodes with
# sse_redis on it, and the one-node local reference, all started at once;
# each of its measurements runs against the local node, then against the
# two nodes (subscribers split between them, POSTs to each in turn), so
# the pair is measured close together on a shared machine.
#
# Scenario 7 (parts 7a and 7b) is HTTP/2 over TLS: the subscribers are
# streams on TLS connections to a second listener (`listen ... ssl http2`,
# a self-signed ECDSA certificate made for the run with openssl), from
# bench/h2bench (ssebench's publisher and checks, nghttp2 streams); the
# publisher POSTs over plain HTTP/1.1 as in the other scenarios.
#
# Environment: SSE_MODULE (our .so), NGINX_BIN (default /usr/sbin/nginx),
# NCHAN_MODULE (default /usr/lib/nginx/modules/ngx_nchan_module.so),
# NCHAN_NGINX_BIN (the nginx nchan runs in, default /usr/sbin/nginx),
# REDIS_SERVER (default redis-server from PATH), OPENSSL_BIN (default
# openssl from PATH).
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
    scenarios => '1,2,3,4,5,6,7',
    targets   => 'sse,nchan',
    out       => "$REPO/build/bench",
    client    => "$BENCH/ssebench",
    h2client  => "$BENCH/h2bench",
    quick     => 0,
    verbose   => 0,
    local_workers => undef,
);

GetOptions(
    'scenarios=s' => \$opt{scenarios},
    'targets=s'   => \$opt{targets},
    'out=s'       => \$opt{out},
    'client=s'    => \$opt{client},
    'h2client=s'  => \$opt{h2client},
    'quick'       => \$opt{quick},
    'local-workers=i' => \$opt{local_workers},
    'verbose|v'   => \$opt{verbose},
) or die "usage: $0 [--quick] [--scenarios 1,2,...,7,7a,7b] [--targets sse,nchan] [--out DIR]"
        . " [--local-workers N]\n";

my $NGINX = $ENV{NGINX_BIN} || '/usr/sbin/nginx';
my $SSE_SO = $ENV{SSE_MODULE} || "$REPO/build/modules/ngx_http_sse_module.so";
my $NCHAN_SO = $ENV{NCHAN_MODULE} || '/usr/lib/nginx/modules/ngx_nchan_module.so';
# nchan's .so loads only into the nginx it was built for (Debian's), even
# when ours runs in another (make bench NGINX_SRC=...)
my $NCHAN_NGINX = $ENV{NCHAN_NGINX_BIN} || '/usr/sbin/nginx';
my $REDIS = $ENV{REDIS_SERVER} || 'redis-server';
my $OPENSSL = $ENV{OPENSSL_BIN} || 'openssl';

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
    {
        # Redis mode against local mode (ours alone: nchan is not in it).
        # Two nodes on one Redis, 2 workers each, the subscribers split
        # between them (subscriber i on node i % 2), the POSTs to each node
        # in turn; the local reference is one node with local_workers
        # workers (2: the same node as scenario 1's, and as each Redis
        # node; the machine's 2 cores are the ceiling either way) and the
        # same subscribers.  Four measurements, each against both:
        #   low:  a rate below saturation (every event its own pass over
        #         the subscribers), for the latency target;
        #   load: scenario 1's 100 events/s (saturated: events wait for
        #         the pass before theirs and leave several per write), with
        #         enough POST connections that the publisher is not what
        #         holds the rate back;
        #   max:  as fast as 4 POST connections are answered: the most
        #         deliveries/s each setup manages;
        #   post: the most POSTs/s 4 connections get answered, with few
        #         subscribers, so the publish path is what is measured.
        id => 6, name => 'Redis: 2 nodes, 10,000 subscribers, 1 channel', redis => 1,
        full  => { subs => 10000, channels => 1, size => 64, batch => 1, workers => 2,
                   local_workers => 2, nodes => 2, procs => 1, addrs => 1,
                   runs => [
                       { key => 'low',  rate => 10,  events => 150,   pub_conns => 2 },
                       { key => 'load', rate => 100, events => 1000,  pub_conns => 8 },
                       { key => 'max',  rate => 0,   events => 6000,  pub_conns => 32 },
                       { key => 'post', rate => 0,   events => 20000, pub_conns => 32,
                         subs => 100 },
                   ] },
        quick => { subs => 400, channels => 1, size => 64, batch => 1, workers => 2,
                   local_workers => 2, nodes => 2, procs => 1, addrs => 1,
                   runs => [
                       { key => 'low',  rate => 20,  events => 20,   pub_conns => 2 },
                       { key => 'load', rate => 100, events => 100,  pub_conns => 8 },
                       { key => 'max',  rate => 0,   events => 300,  pub_conns => 4 },
                       { key => 'post', rate => 0,   events => 2000, pub_conns => 4,
                         subs => 20 },
                   ] },
    },
);

# Scenario 7, HTTP/2 over TLS, in two parts: many streams on few
# connections (7a), and many connections of one stream each (7b).  streams:
# streams per connection.  The rate stays below what either target
# saturates at, so that the latencies are those of a pass over the streams,
# not of a queue; hold: idle seconds after connecting, before the memory
# sample (as scenario 4).
push @SCENARIOS,
    {
        id => 7, part => 'a', h2 => 1,
        name => 'HTTP/2 + TLS: 10,000 streams over 50 connections, 1 channel',
        full  => { subs => 10000, streams => 200, channels => 1, rate => 5, events => 40,
                   size => 64, batch => 1, pub_conns => 2, workers => 2,
                   procs => 1, addrs => 1, hold => 5 },
        quick => { subs => 200, streams => 40, channels => 1, rate => 20, events => 20,
                   size => 64, batch => 1, pub_conns => 2, workers => 2,
                   procs => 1, addrs => 1, hold => 1 },
    },
    {
        id => 7, part => 'b', h2 => 1,
        name => 'HTTP/2 + TLS: 2,000 connections of one stream each, 1 channel',
        full  => { subs => 2000, streams => 1, channels => 1, rate => 5, events => 40,
                   size => 64, batch => 1, pub_conns => 2, workers => 2,
                   procs => 1, addrs => 1, hold => 5 },
        quick => { subs => 50, streams => 1, channels => 1, rate => 20, events => 20,
                   size => 64, batch => 1, pub_conns => 2, workers => 2,
                   procs => 1, addrs => 1, hold => 1 },
    };

# A scenario's name in the table and its key in the JSON: 1 .. 6, 7a, 7b
sub sc_key { my ($sc) = @_; $sc->{id} . ($sc->{part} // '') }

# what each measurement of scenario 6 is, for the table
my %RUN_WHAT = (
    low  => 'below saturation',
    load => "scenario 1's load",
    max  => 'as fast as possible',
    post => 'max POST rate',
);

# --scenarios 7 is both parts of scenario 7, 7a one of them
my %want = map { $_ => 1 } split /,/, $opt{scenarios};
my @wanted = grep { $want{ $_->{id} } || $want{ sc_key($_) } } @SCENARIOS;
die "HTTP/2 load client $opt{h2client} not found: build it with make -C bench\n"
    if grep({ $_->{h2} } @wanted) && !-x $opt{h2client};
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

# $extra: more http-level lines (sse_redis) and a status location, for
# scenario 6's nodes; the other scenarios' configs are as they were
sub nginx_conf {
    my ($target, $dir, $port, $p, $extra) = @_;

    my $conns = 19800;
    my $user = $> == 0 ? "user root;\n" : '';
    my ($load, $http, $locations);

    # scenario 7: the subscribers' TLS listener, HTTP/2, in the same server
    # (the same locations); more concurrent streams than nginx's 128, so
    # that 7a's 200 per connection all open
    my $tls = '';
    if ($p->{h2}) {
        $tls = <<"EOT";
        listen 127.0.0.1:$p->{tls_port} ssl http2 reuseport backlog=4096;
        ssl_certificate $p->{cert};
        ssl_certificate_key $p->{key};
        ssl_protocols TLSv1.2 TLSv1.3;
        http2_max_concurrent_streams 256;
EOT
    }

    if ($target eq 'sse') {
        $load = "load_module $SSE_SO;";
        $http = "sse_zone sse:64m;\n    sse_history 100;\n    sse_history_ttl 1h;";
        $locations = <<'EOL';
        location ~ ^/events/(.+)$ { sse_stream $1; }
        location ~ ^/pub/(.+)$ { sse_publish $1; }
EOL
        if ($extra) {
            $http .= "\n    $extra->{http}" if $extra->{http};
            $locations .= "        location = /status { sse_status; }\n";
        }
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
${user}worker_processes @{[ $extra && $extra->{workers} || $p->{workers} ]};
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
$tls$locations
    }
}
EOC
}

sub start_nginx {
    my ($target, $p, $name, $extra) = @_;

    $name //= $target;
    my $dir = "$opt{out}/run-$name";
    remove_tree($dir);
    make_path("$dir/tmp");
    my $port = free_port();
    my $tls_port;
    if ($p->{h2}) {
        my ($cert, $key) = tls_cert();
        $tls_port = free_port();
        $tls_port = free_port() while $tls_port == $port;
        $p = { %$p, tls_port => $tls_port, cert => $cert, key => $key };
    }

    open my $fh, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!";
    print $fh nginx_conf($target, $dir, $port, $p, $extra);
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

    my $workers = $extra && $extra->{workers} || $p->{workers};
    for (1 .. 200) {
        last if scalar(worker_pids($pid)) >= $workers;
        sleep 0.05;
    }

    return { target => $target, name => $name, dir => $dir, port => $port, pid => $pid,
             tls_port => $tls_port };
}

# The run's self-signed certificate (ECDSA P-256, for 127.0.0.1), made once
# by openssl in the output folder; both targets use it.
my @TLS_CERT;
sub tls_cert {
    return @TLS_CERT if @TLS_CERT;
    my $dir = "$opt{out}/run-tls";
    remove_tree($dir);
    make_path($dir);
    my @cmd = ($OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
               '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1',
               '-addext', 'subjectAltName=IP:127.0.0.1',
               '-keyout', "$dir/key.pem", '-out', "$dir/cert.pem");
    my $out = qx{@cmd 2>&1};
    die "openssl could not make the certificate: $out\n" if $? || !-s "$dir/cert.pem";
    return @TLS_CERT = ("$dir/cert.pem", "$dir/key.pem");
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

# ---------------------------------------------------------------- redis

# A redis-server of our own: loopback, a free port, its own directory, no
# persistence (no RDB snapshot, no AOF), in the foreground as our child.
sub start_redis {
    my $dir = "$opt{out}/run-redis";
    remove_tree($dir);
    make_path($dir);
    my $port = free_port();

    open my $fh, '>', "$dir/redis.conf" or die "$dir/redis.conf: $!";
    print $fh <<"EOC";
bind 127.0.0.1
port $port
protected-mode yes
daemonize no
dir $dir
logfile $dir/redis.log
save ""
appendonly no
maxclients 1000
EOC
    close $fh;

    my $pid = fork() // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', "$dir/redis.out";
        open STDERR, '>&', \*STDOUT;
        { exec $REDIS, "$dir/redis.conf" }
        print STDERR "exec $REDIS: $!\n";
        POSIX::_exit(127);
    }
    my $srv = { dir => $dir, port => $port, pid => $pid };
    for (1 .. 200) {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Timeout => 2);
        if ($s) {
            print $s "PING\r\n";
            my $l = <$s> // '';
            return $srv if $l =~ /^\+PONG/;
        }
        if (waitpid($pid, WNOHANG) == $pid) {
            die "redis-server did not start (exit " . ($? >> 8) . "): "
                . (slurp("$dir/redis.out") // '') . (slurp("$dir/redis.log") // '') . "\n";
        }
        sleep 0.05;
    }
    stop_redis($srv);
    die "redis-server on 127.0.0.1:$port does not answer PING\n";
}

sub stop_redis {
    my ($srv) = @_;
    my $pid = $srv->{pid};
    kill 'TERM', $pid;
    for (1 .. 100) {
        return if waitpid($pid, WNOHANG) == $pid;
        sleep 0.1;
    }
    say_err("redis-server $pid did not stop in 10 s, killing it");
    kill 'KILL', $pid;
    waitpid($pid, 0);
}

# The body of GET path on a loopback port (for the nodes' status JSON).
sub http_get {
    my ($port, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                  Proto => 'tcp', Timeout => 10) or return undef;
    print $s "GET $path HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    local $/;
    my $r = <$s> // '';
    return $r =~ /\r\n\r\n(.*)\z/s ? $1 : undef;
}

# Each kind of alert in an nginx error.log once, with how often it came;
# $more: a regex of further lines that count (scenario 6: any [error]).
sub log_alerts {
    my ($file, $more) = @_;
    my $log = slurp($file) // '';
    my (%n, @bad);
    for my $l (split /\n/, $log) {
        next unless $l =~ /\[(alert|crit|emerg)\]|exited on signal/ || ($more && $l =~ $more);
        (my $k = $l) =~ s/^\S+ \S+ //;
        $k =~ s/\d+#\d+: //;
        $k =~ s/\d+/N/g;
        push @bad, $k unless $n{$k}++;
    }
    return map { "$_ (x$n{$_})" } @bad[0 .. ($#bad < 9 ? $#bad : 9)];
}

# ---------------------------------------------------------------- a run

sub run_client {
    my ($srv, $p, $sc) = @_;

    my $t = $srv->{target};
    my $batch = $t eq 'nchan' && defined $p->{nchan_batch} ? $p->{nchan_batch} : $p->{batch};
    my $conns = $t eq 'nchan' && defined $p->{nchan_pub_conns} ? $p->{nchan_pub_conns} : $p->{pub_conns};

    return ssebench({ %$p, batch => $batch, pub_conns => $conns, tls_port => $srv->{tls_port} },
                    [ $srv->{port} ], [ "$srv->{dir}/nginx.pid" ], [], 's' . sc_key($sc) . "-$t");
}

# One ssebench run: subscribers and POSTs over @$ports, CPU and memory of
# the servers of @$pidfiles (nginx: master and workers) and of @$pids
# (redis-server), each reported apart in the JSON's "servers".  With
# $p->{h2}, h2bench: the subscribers on $p->{tls_port}, the POSTs on $ports.
sub ssebench {
    my ($p, $ports, $pidfiles, $pids, $label) = @_;

    my @cmd = ($p->{h2} ? $opt{h2client} : $opt{client},
        '--port', join(',', @$ports),
        '--sub-prefix', '/events/', '--pub-prefix', '/pub/',
        '--subs', $p->{subs}, '--channels', $p->{channels},
        '--procs', $p->{procs}, '--addrs', $p->{addrs},
        '--events', $p->{events}, '--rate', $p->{rate},
        '--size', $p->{size}, '--batch', $p->{batch},
        '--pub-conns', $p->{pub_conns},
        '--hold', $p->{hold} // 0,
        (map { ('--pidfile', $_) } @$pidfiles),
        (map { ('--pids', $_) } @$pids),
        '--label', $label);
    push @cmd, '--h2-port', $p->{tls_port}, '--streams', $p->{streams} if $p->{h2};
    push @cmd, '-v' if $opt{verbose};

    say_err("$label: @cmd[1 .. $#cmd]") if $opt{verbose};

    my $t0 = time();
    my $out = '';
    open my $fh, '-|', @cmd or die "cannot run $cmd[0]: $!";
    { local $/; $out = <$fh> // ''; }
    close $fh;
    my $rc = $? >> 8;

    my $r = eval { decode_json($out) };
    if (!$r) {
        return { fatal => "$cmd[0] exit $rc, no JSON: " . substr($out, 0, 300) };
    }
    $r->{wall_s} = time() - $t0;
    $r->{client_exit} = $rc;
    return $r;
}

# ---------------------------------------------------------------- scenario 6

# The status JSON of a node, or undef.
sub node_status {
    my ($srv) = @_;
    my $body = http_get($srv->{port}, '/status') // return undef;
    return eval { decode_json($body) };
}

sub run_redis_scenario {
    my ($sc, $p) = @_;
    my $lw = $opt{local_workers} // $p->{local_workers};
    my %res = (params => { %$p, local_workers => $lw }, runs => {});
    my ($redis, $local, @nodes);

    my $ok = eval {
        $redis = start_redis();
        $local = start_nginx('sse', $p, 'local', { workers => $lw });
        for my $n (1 .. $p->{nodes}) {
            push @nodes, start_nginx('sse', $p, "redis-node$n",
                { http => "sse_redis redis://127.0.0.1:$redis->{port};" });
        }
        for my $srv (@nodes) {
            my $st;
            for (1 .. 100) {
                $st = node_status($srv);
                last if $st && ($st->{redis} // '') eq 'up';
                sleep 0.1;
            }
            die "$srv->{name}: its link to Redis is not up after 10 s (status: "
                . ($st ? encode_json($st) : 'none') . ")\n"
                unless $st && ($st->{redis} // '') eq 'up';
        }

        for my $run (@{ $p->{runs} }) {
            my $rp = { %$p, %$run };
            delete $rp->{runs};
            for my $mode ('local', 'redis') {
                my $label = "s$sc->{id}-$run->{key}-$mode";
                say_err(sprintf "scenario %d, %s (%d subscribers, %d events%s, %d POST connections) against %s ...",
                    $sc->{id}, $RUN_WHAT{ $run->{key} }, $rp->{subs}, $rp->{events},
                    $rp->{rate} ? " at $rp->{rate}/s" : ' as fast as possible',
                    $rp->{pub_conns}, $mode eq 'local' ? 'the local node' : 'the Redis nodes');
                my $r = $mode eq 'local'
                    ? ssebench($rp, [ $local->{port} ], [ "$local->{dir}/nginx.pid" ], [], $label)
                    : ssebench($rp, [ map { $_->{port} } @nodes ],
                               [ map { "$_->{dir}/nginx.pid" } @nodes ], [ $redis->{pid} ], $label);
                $r->{params} = $rp;
                $res{runs}{ $run->{key} }{$mode} = $r;
                say_err(sprintf "  %s: %s connected, %s POSTs/s, %s deliveries/s, p99 %s ms, missing %s%s",
                    $mode, $r->{connected} // '?',
                    fmt_num($r->{publish_s} ? $r->{publish_requests} / $r->{publish_s} : undef),
                    fmt_num($r->{deliveries_per_s}), fmt_ms($r->{latency_us}{p99}),
                    $r->{missing} // '?', $r->{fatal} ? ", FATAL: $r->{fatal}" : '');
                $res{fatal} //= "$run->{key}, $mode: $r->{fatal}" if $r->{fatal};
            }
        }
        # which node logged and read what: both take POSTs, both read all
        $res{status} = { local => node_status($local),
                         map { ("node$_" => node_status($nodes[$_ - 1])) } 1 .. @nodes };
        1;
    };
    if (!$ok) {
        chomp(my $e = $@);
        $res{fatal} //= $e;
        say_err("scenario $sc->{id}: $e");
    }
    stop_nginx($_) for grep { defined } $local, @nodes;
    stop_redis($redis) if $redis;

    # Redis mode logs a lost link or a refused script at [error]
    my @bad;
    for my $srv (grep { defined } $local, @nodes) {
        push @bad, map { "$srv->{name}: $_" } log_alerts("$srv->{dir}/error.log", qr/\[error\]/);
    }
    $res{error_log} = \@bad if @bad;
    return \%res;
}

# ---------------------------------------------------------------- main

my %results;
my @ran;

for my $sc (@wanted) {
    my $p = { %{ $sc->{$size} }, ($sc->{h2} ? (h2 => 1) : ()) };

    if ($sc->{redis}) {
        # ours alone: without the sse target there is nothing to run
        next unless grep { $_ eq 'sse' } @targets;
        push @ran, $sc;
        $results{ sc_key($sc) }{sse} = run_redis_scenario($sc, $p);
        next;
    }
    push @ran, $sc;

    for my $t (@targets) {
        say_err(sprintf "scenario %s (%s) against %s ...", sc_key($sc), $sc->{name}, $t);
        my $srv = start_nginx($t, $p);
        my $r = eval { run_client($srv, $p, $sc) } // { fatal => "$@" };
        stop_nginx($srv);

        # each kind of alert once, with how often it was logged
        my @bad = log_alerts("$srv->{dir}/error.log");
        $r->{error_log} = \@bad if @bad;
        $r->{params} = $p;
        $results{ sc_key($sc) }{$t} = $r;

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
exit(grep({ $results{ sc_key($_) }{sse} && $results{ sc_key($_) }{sse}{fatal} } @ran) ? 1 : 0);

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

# The TLS connections of an HTTP/2 scenario.
sub h2_conns { my ($p) = @_; int(($p->{subs} + $p->{streams} - 1) / $p->{streams}) }

# Scenario 7's figures (the same shape as rows_for's).  The goals: memory
# per stream and CPU per delivery at most half nchan's, p99 at most nchan's,
# nothing missing, and at most 2 writes per connection per event (ours:
# one write of all the connection's streams' frames, plus the POST's answer
# and a TLS record that did not fit).
sub rows_h2 {
    my ($p) = @_;
    my $conns = h2_conns($p);
    my $wmax = 2 * $conns;
    return (
        ['streams connected', sub { $_[0]{connected} }, \&fmt_num],
        ['events published/s', sub { $_[0]{publish_s} ? $_[0]{published} / $_[0]{publish_s} : undef }, \&fmt_num],
        ['deliveries/s', sub { $_[0]{deliveries_per_s} }, \&fmt_num],
        ['latency p50 (ms)', sub { $_[0]{latency_us}{p50} }, \&fmt_ms],
        ['latency p90 (ms)', sub { $_[0]{latency_us}{p90} }, \&fmt_ms],
        ['latency p99 (ms)', sub { $_[0]{latency_us}{p99} }, \&fmt_ms, ['<=', 1]],
        ['latency max (ms)', sub { $_[0]{latency_us}{max} }, \&fmt_ms],
        ['server RSS per stream (KB)', sub { $_[0]{rss_per_sub_bytes} }, \&fmt_kb, ['<=', 0.5]],
        ['server CPU per delivery (µs)', sub { $_[0]{server_cpu_us_per_delivery} }, \&fmt_num,
            ['<=', 0.5]],
        ['server CPU (s)', sub { $_[0]{server_cpu_s} }, \&fmt_num],
        ['writes per event', sub { $_[0]{writes_per_event} }, \&fmt_num,
            [undef, undef, "ours ≤ 2 × $conns connections = $wmax",
             sub { ($_[0]{writes_per_event} // 1e12) <= $wmax }]],
        ['client CPU (s)', sub { $_[0]{client_cpu_s} }, \&fmt_num],
        ['missing', sub { $_[0]{missing} }, \&fmt_num,
            [undef, undef, 'none', sub { defined $_[0]{missing} && $_[0]{missing} == 0 }]],
        ['duplicated', sub { $_[0]{duplicated} }, \&fmt_num],
        ['out of order', sub { $_[0]{out_of_order} }, \&fmt_num],
        ['streams closed early', sub { $_[0]{closed_early} }, \&fmt_num],
    );
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
        if ($sc->{redis}) {
            $t .= table_redis($sc, $res->{ sc_key($sc) }{sse} // {});
            next;
        }
        my $ours = $res->{ sc_key($sc) }{sse} // {};
        my $them = $res->{ sc_key($sc) }{nchan} // {};
        $t .= sprintf "### Scenario %s: %s\n\n", sc_key($sc), $sc->{name};
        if ($sc->{h2}) {
            $t .= sprintf "%d streams over %d TLS connections (%d per connection, HTTP/2), "
                        . "%d channel, %d events at %s/s, %d B, POSTed over plain HTTP/1.1, "
                        . "%d nginx workers, memory after %d s held\n\n",
                $p->{subs}, h2_conns($p), $p->{streams}, $p->{channels}, $p->{events},
                $p->{rate}, $p->{size}, $p->{workers}, $p->{hold};
        } else {
            $t .= sprintf "%d subscribers, %d channel(s), %d events%s, %d B, "
                        . "batch %d (nchan %d), %d nginx workers\n\n",
                $p->{subs}, $p->{channels}, $p->{events},
                ($p->{rate} ? " at $p->{rate}/s" : ' as fast as possible'),
                $p->{size}, $p->{batch}, $p->{nchan_batch} // $p->{batch},
                $p->{workers};
        }
        $t .= "| figure | ours | nchan | ours/nchan | goal |\n";
        $t .= "|---|---:|---:|---:|---|\n";
        for my $row ($sc->{h2} ? rows_h2($p) : rows_for($sc->{id})) {
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

# Scenario 6's table: Redis mode (2 nodes) against local mode (1 node),
# one block of rows per measurement.
sub table_redis {
    my ($sc, $res) = @_;
    my $p = $res->{params} // $sc->{$size};
    my %run = map { $_->{key} => $_ } @{ $p->{runs} };
    my $get = sub { my ($key, $mode) = @_; $res->{runs}{$key}{$mode} // {} };

    my $t = sprintf "### Scenario %d: %s\n\n", $sc->{id}, $sc->{name};
    $t .= sprintf "%d subscribers, %d channel, %d B events. Redis: %d nodes of %d workers on one "
                . "redis-server (its own, no persistence), subscriber i on node i %% %d, the POSTs "
                . "to the nodes in turn. Local: 1 node of %d workers, the same subscribers.\n\n",
        $p->{subs}, $p->{channels}, $p->{size}, $p->{nodes}, $p->{workers}, $p->{nodes},
        $p->{local_workers};
    for my $key (map { $_->{key} } @{ $p->{runs} }) {
        my $r = $run{$key};
        $t .= sprintf "- %s: %d subscribers, %d events %s, %d POST connections\n",
            $RUN_WHAT{$key}, $r->{subs} // $p->{subs}, $r->{events},
            $r->{rate} ? "at $r->{rate}/s" : 'as fast as possible', $r->{pub_conns};
    }
    $t .= "\n| figure | Redis, $p->{nodes} nodes | local, 1 node | Redis/local | nchan | goal |\n";
    $t .= "|---|---:|---:|---:|---|---|\n";

    my $posts = sub { $_[0]{publish_s} ? $_[0]{publish_requests} / $_[0]{publish_s} : undef };
    my $server = sub {          # the CPU per delivery of server i alone
        my ($i) = @_;
        sub { my $s = $_[0]{servers} || []; $s->[$i] ? $s->[$i]{cpu_us_per_delivery} : undef };
    };
    my $cpu_rows = sub {
        my ($key, $what) = @_;
        return (
            [$key, "$what: server CPU per delivery, all (µs)", sub { $_[0]{server_cpu_us_per_delivery} }, \&fmt_num],
            (map { my $i = $_ - 1;
                   [$key, "$what: … node $_ (µs)", $server->($i), \&fmt_num, undef, 1] } 1 .. $p->{nodes}),
            [$key, "$what: … redis-server (µs)", $server->($p->{nodes}), \&fmt_num, undef, 1],
        );
    };
    my $post_rows = sub {
        my ($key, $what) = @_;
        return map { my $q = $_;
                     [$key, "$what: POST answered in, $q (ms)", sub { $_[0]{post_latency_us}{$q} }, \&fmt_ms] }
                   'p50', 'p99';
    };
    my $low = "$RUN_WHAT{low} ($run{low}{rate}/s)";
    my $load = "$RUN_WHAT{load} ($run{load}{rate}/s)";
    my $max = $RUN_WHAT{max};
    my $post = $RUN_WHAT{post};

    # [run, label, getter, formatter, goal, no ratio]; a goal gets the
    # Redis and the local figure and says met or NOT met
    my @rows = (
        ['low', 'subscribers connected', sub { $_[0]{connected} }, \&fmt_num],
        ['low', "$low: events published/s", sub { $_[0]{publish_s} ? $_[0]{published} / $_[0]{publish_s} : undef }, \&fmt_num],
        ['low', "$low: deliveries/s", sub { $_[0]{deliveries_per_s} }, \&fmt_num],
        ['low', "$low: latency p50 (ms)", sub { $_[0]{latency_us}{p50} }, \&fmt_ms],
        ['low', "$low: latency p90 (ms)", sub { $_[0]{latency_us}{p90} }, \&fmt_ms],
        ['low', "$low: latency p99 (ms)", sub { $_[0]{latency_us}{p99} }, \&fmt_ms,
            sub { my ($a, $b) = @_;
                  'at most local + 5 ms: ' . (defined $a && defined $b ? ($a <= $b + 5000 ? 'met' : 'NOT met') : 'n/a') }],
        ['low', "$low: latency max (ms)", sub { $_[0]{latency_us}{max} }, \&fmt_ms],
        $cpu_rows->('low', $low),
        ['load', "$load: events published/s", sub { $_[0]{publish_s} ? $_[0]{published} / $_[0]{publish_s} : undef }, \&fmt_num],
        ['load', "$load: deliveries/s", sub { $_[0]{deliveries_per_s} }, \&fmt_num],
        ['load', "$load: latency p50 (ms)", sub { $_[0]{latency_us}{p50} }, \&fmt_ms],
        ['load', "$load: latency p99 (ms)", sub { $_[0]{latency_us}{p99} }, \&fmt_ms],
        $post_rows->('load', $load),
        $cpu_rows->('load', $load),
        ['max', "$max: POSTs answered/s", $posts, \&fmt_num],
        ['max', "$max: deliveries/s", sub { $_[0]{deliveries_per_s} }, \&fmt_num,
            sub { my ($a, $b) = @_; my $r = ratio($a, $b);
                  'ratio ≥ 0.9: ' . ($r eq '—' ? 'n/a' : $r >= 0.9 ? 'met' : 'NOT met') }],
        ['max', "$max: latency p99 (ms)", sub { $_[0]{latency_us}{p99} }, \&fmt_ms],
        $post_rows->('max', $max),
        $cpu_rows->('max', $max),
        ['post', "$post: POSTs answered/s", $posts, \&fmt_num,
            sub { my ($a, $b) = @_; my $r = ratio($a, $b);
                  'ratio ≥ 0.5: ' . ($r eq '—' ? 'n/a' : $r >= 0.5 ? 'met' : 'NOT met') }],
        ['post', "$post: latency p99 (ms)", sub { $_[0]{latency_us}{p99} }, \&fmt_ms],
        $post_rows->('post', $post),
        ['post', "$post: server CPU per POST, all (µs)",
            sub { $_[0]{published} && defined $_[0]{server_cpu_s} ? $_[0]{server_cpu_s} * 1e6 / $_[0]{published} : undef }, \&fmt_num],
        ['post', "$post: … redis-server (µs)",
            sub { my $s = ($_[0]{servers} || [])->[$p->{nodes}];
                  $s && $_[0]{published} && defined $s->{cpu_s} ? $s->{cpu_s} * 1e6 / $_[0]{published} : undef },
            \&fmt_num, undef, 1],
    );
    for my $row (@rows) {
        my ($key, $label, $getter, $fmt, $goal, $noratio) = @$row;
        my ($a, $b) = (eval { $getter->($get->($key, 'redis')) }, eval { $getter->($get->($key, 'local')) });
        $t .= sprintf "| %s | %s | %s | %s | — | %s |\n", $label, $fmt->($a), $fmt->($b),
            $noratio ? '—' : ratio($a, $b), $goal ? $goal->($a, $b) : '';
    }
    # every measurement's counts together
    for my $c (['missing', 'missing'], ['duplicated', 'duplicated'],
               ['out of order', 'out_of_order'], ['closed early', 'closed_early']) {
        my ($label, $k) = @$c;
        my %sum;
        for my $mode ('redis', 'local') {
            for my $key (keys %run) {
                my $v = $get->($key, $mode)->{$k};
                $sum{$mode} = defined $v ? ($sum{$mode} // 0) + $v : $sum{$mode};
                $sum{"$mode-undef"} = 1 unless defined $v;
            }
            $sum{$mode} = undef if $sum{"$mode-undef"};
        }
        my $goal = $k ne 'missing' ? ''
                 : 'none: ' . (defined $sum{redis} && $sum{redis} == 0 && defined $sum{local}
                               && $sum{local} == 0 ? 'met' : 'NOT met');
        $t .= sprintf "| %s (all measurements) | %s | %s | — | — | %s |\n", $label,
            fmt_num($sum{redis}), fmt_num($sum{local}), $goal;
    }
    if (my $st = $res->{status}) {
        my @n = map { my $s = $st->{"node$_"} || {};
                      sprintf 'node %d: redis %s, %s entries logged, %s read, %s events delivered',
                          $_, $s->{redis} // '?', $s->{redis_logged} // '?', $s->{redis_read} // '?',
                          $s->{events_delivered} // '?' } 1 .. $p->{nodes};
        $t .= "\nStatus after the runs: " . join('; ', @n) . ".\n";
    }
    $t .= "\nnchan: not part of this scenario.\n";
    $t .= "\nFATAL: $res->{fatal}\n" if $res->{fatal};
    $t .= "\nerror.log: " . join(' | ', @{ $res->{error_log} }) . "\n" if $res->{error_log};
    return "$t\n";
}

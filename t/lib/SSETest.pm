package SSETest;

# Test harness for ngx_http_sse_module.  Perl core modules only.
#
#   my $srv = start_nginx(workers => 2, http => 'sse_history 3;');
#   my $s   = $srv->sse_connect('/events/news');
#   my $r   = $srv->publish('/pub/news', "hello", type => 'tick');
#   my @ev  = $s->read_events(count => 1, timeout => 2);
#   $srv->stop;      # fails a test if error.log shows a crash/alert
#
# SSE_VALGRIND=1 runs nginx (and nginx -t) under valgrind's memcheck, with
# the default timeouts multiplied by SSE_VALGRIND_SCALE (default 10);
# stop() then fails a test when a valgrind log has an error or a definite
# leak with a ngx_http_sse_ frame.  SSE_VALGRIND_OPTS: more valgrind options.
#
# The functions http/publish/status/sse_connect also work without a
# server object as first argument: they then use the last started server.

use strict;
use warnings;

use Test::More ();
use IO::Socket::INET;
use IO::Select;
use Socket qw(SOL_SOCKET SO_RCVBUF IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);
use File::Temp qw(tempdir);
use File::Spec;
use File::Basename qw(dirname);
use Cwd qw(abs_path);
use POSIX qw(:errno_h WNOHANG);
use Errno;
use Exporter 'import';

our @EXPORT = qw(
    start_nginx http http_parallel publish status sse_connect sse_connect_many
    json_decode json_encode parse_id id_cmp ids_strictly_increasing
    url_encode check_json_error wait_until now_ms repo_dir
    nginx_config_test sse_frame keepalive_conn keepalive_http stop_process
    make_certificate proc_mem
);

our $CURRENT;           # last started server
our %LIVE;              # "$obj" => $obj, servers not yet stopped
our $VALGRIND = $ENV{SSE_VALGRIND} ? 1 : 0;
our $SCALE = $VALGRIND ? ($ENV{SSE_VALGRIND_SCALE} || 10) : 1;
our $DEFAULT_TIMEOUT = 5 * $SCALE;
our $LAST_START_OUTPUT = '';
our %VALGRIND_SHOWN;    # valgrind records outside our code already shown

our $DEFAULT_SERVER = <<'EOS';
        location ~ ^/events/(.+)$ { sse_stream $1; }
        location ~ ^/pub/(.+)$ { sse_publish $1; }
        location = /status { sse_status; }
EOS

# valgrind records that are errors (the first line of the record)
our $VALGRIND_ERROR = join '|', map { "(?:$_)" } (
    'Invalid (?:read|write|free)', 'Mismatched free', 'Conditional jump',
    'Syscall param', '.*uninitialised', 'Source and destination overlap',
    'Argument .* has a fishy', 'Jump to the invalid address',
    '.* are definitely lost',
    'Process terminating with default action of signal \d+ \(SIG(?:SEGV|BUS|ABRT|FPE|ILL|SYS)\)',
);
$VALGRIND_ERROR = qr/\A(?:$VALGRIND_ERROR)/;

# Lines of error.log that must never appear.
our @FATAL_LOG = (
    qr/\[alert\]/, qr/\[emerg\]/, qr/\[crit\]/,
    qr/exited on signal/, qr/segmentation/i,
);

sub repo_dir {
    my $d = dirname(abs_path(__FILE__));          # <repo>/t/lib
    return abs_path("$d/../..");
}

sub now_ms { return int(time() * 1000) }

sub wait_until {
    my ($code, $timeout, $step) = @_;
    $timeout //= $DEFAULT_TIMEOUT;
    $step    //= 0.02;
    my $deadline = time() + $timeout;
    while (1) {
        my $v = $code->();
        return $v if $v;
        return $v if time() >= $deadline;
        sleep $step;
    }
}

# ----------------------------------------------------------------------
# nginx control

sub _free_port {
    my $s = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen => 1, ReuseAddr => 1,
    ) or die "cannot bind a free port: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

# writes nginx.conf into a fresh temp dir; returns ($dir, $conf, $port, $bin)
sub _make_conf {
    my %o = @_;
    my $bin = $ENV{NGINX_BIN} || '/usr/sbin/nginx';
    my $so  = exists $o{module} ? $o{module}
            : ($ENV{SSE_MODULE} || repo_dir() . '/build/modules/ngx_http_sse_module.so');
    if (defined $so && length $so) {
        $so = File::Spec->rel2abs($so);
        die "module $so not found (build it with make, or set SSE_MODULE)\n"
            unless -f $so;
    }
    my $workers = $o{workers} // 2;
    my $dir = tempdir('sse-test-XXXXXX', TMPDIR => 1,
                      CLEANUP => !$ENV{KEEP});
    chmod 0755, $dir;
    my $port = $o{port} // _free_port();
    my $server_text = $o{server} // $DEFAULT_SERVER;
    $server_text .= "\n" . $o{server_extra} if defined $o{server_extra};
    my $http_text = $o{http} // '';
    my $main_text = $o{main} // '';
    # events: the body of the events block instead of the default one
    my $events_text = $o{events} // "worker_connections 4096;\n    accept_mutex off;";
    my $listen = "127.0.0.1:$port" . (defined $o{listen_opts} ? " $o{listen_opts}" : '');
    my $user = $> == 0 ? "user root;\n" : '';
    # valgrind refuses a setrlimit(RLIMIT_NOFILE) that changes the hard
    # limit: nginx would log an [alert]; the inherited limit is used instead
    my $nofile = $VALGRIND ? '' : "worker_rlimit_nofile 8192;\n";
    my $load = (defined $so && length $so) ? "load_module $so;\n" : '';

    my $conf = <<"EOC";
${load}${user}worker_processes $workers;
pid $dir/nginx.pid;
error_log $dir/error.log info;
daemon on;
master_process on;
${nofile}$main_text

events {
    $events_text
}

http {
    access_log off;
    client_body_temp_path $dir/client_body_temp;
    proxy_temp_path $dir/proxy_temp;
    fastcgi_temp_path $dir/fastcgi_temp;
    uwsgi_temp_path $dir/uwsgi_temp;
    scgi_temp_path $dir/scgi_temp;
$http_text

    server {
        listen $listen;
        add_header X-Worker \$pid always;
$server_text
    }
}
EOC
    open my $fh, '>', "$dir/nginx.conf" or die "write conf: $!";
    print $fh $conf;
    close $fh;
    return ($dir, $conf, $port, $bin, $workers);
}

# the command prefix that runs nginx under valgrind ('' without SSE_VALGRIND);
# valgrind follows nginx's fork()s by itself: one log per process
sub _valgrind_cmd {
    my ($dir) = @_;
    return '' unless $VALGRIND;
    return join(' ', 'valgrind', '--tool=memcheck', '--leak-check=full',
        '--show-leak-kinds=definite', '--errors-for-leak-kinds=definite',
        '--num-callers=30',
        '--track-origins=yes',          # where an uninitialised value comes from
        '--keep-debuginfo=yes',         # symbols after nginx dlclose()s the module
        '--vgdb=no', "--log-file=$dir/valgrind.%p.log",
        $ENV{SSE_VALGRIND_OPTS} // ()) . ' ';
}

# _valgrind_check($dir, $what): reads $dir/valgrind.*.log; a test fails
# when an error or a definite leak has a ngx_http_sse_ frame in one of its
# stacks; the others (nginx, libc) are only shown.
sub _valgrind_check {
    my ($dir, $what) = @_;
    opendir my $dh, $dir or return 1;
    my @logs = sort grep { /^valgrind\.\d+\.log$/ } readdir $dh;
    closedir $dh;
    my (%ours, %other, @order);
    for my $f (@logs) {
        my $text = _slurp("$dir/$f") // next;
        # records are separated by "==pid== " lines
        for my $r (split /^==\d+==[ \t]*\n/m, $text) {
            $r =~ s/^==\d+== ?//mg;
            next unless $r =~ $VALGRIND_ERROR;
            # the same record from several processes is shown once
            my ($head, $stack) = split /\n/, $r, 2;
            my $key = ($head =~ s/[\d,]+/N/gr) . "\n" . (($stack // '') =~ s/0x[0-9A-Fa-f]+/0x/gr);
            my $h = $r =~ /^\s+(?:at|by) 0x[0-9A-Fa-f]+: .*ngx_http_sse_/m
                  ? \%ours : \%other;
            push @order, $key unless $h->{$key};
            push @{ $h->{$key} }, [$f, $r];
        }
    }
    my $show = sub {
        my ($h) = @_;
        return join "\n", map {
            my @s = @{ $h->{$_} };
            "--- $s[0][0]" . (@s > 1 ? sprintf(' (and %d more)', @s - 1) : '')
            . ":\n$s[0][1]";
        } grep { $h->{$_} } @order;
    };
    # outside our code: each record once per test file
    delete @other{ grep { $VALGRIND_SHOWN{$_}++ } keys %other };
    Test::More::diag("valgrind, not in ngx_http_sse_ code ($what):\n"
                     . $show->(\%other)) if %other;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::ok(!%ours, "valgrind: no memory error or definite leak in"
                   . " ngx_http_sse_ code ($what, " . @logs . " logs)")
        or Test::More::diag($show->(\%ours));
    return !%ours;
}

# nginx_config_test(%same_opts_as_start_nginx): runs nginx -t on the
# config; returns { ok => 0|1, output => text, conf => text }
sub nginx_config_test {
    my %o = @_;
    my ($dir, $conf, $port, $bin) = _make_conf(%o);
    my $vg = _valgrind_cmd($dir);
    my $out = qx{$vg$bin -t -p $dir/ -c $dir/nginx.conf -e $dir/error.log 2>&1};
    my $rc = $?;
    $out .= _slurp("$dir/error.log") // '';
    _valgrind_check($dir, 'nginx -t') if $VALGRIND;
    return { ok => ($rc == 0 ? 1 : 0), output => $out, conf => $conf };
}

sub start_nginx {
    my %o = @_;
    my ($dir, $conf, $port, $bin, $workers) = _make_conf(%o);
    my $vg = _valgrind_cmd($dir);
    my $out = qx{$vg$bin -p $dir/ -c $dir/nginx.conf -e $dir/error.log 2>&1};
    my $rc = $?;
    my $self = bless {
        port => $port, dir => $dir, bin => $bin, workers => $workers,
        conf => $conf, owner => $$, stopped => 0, allow_log => [],
        opts => \%o,
    }, 'SSETest::Server';
    if ($rc != 0) {
        $LAST_START_OUTPUT = $out . _slurp("$dir/error.log");
        $self->{stopped} = 1;
        _valgrind_check($dir, 'nginx failing to start') if $VALGRIND;
        return undef if $o{may_fail};
        die "nginx failed to start (rc=$rc):\n$LAST_START_OUTPUT\n--- conf ---\n$conf";
    }
    my $pid;
    wait_until(sub {
        my $t = _slurp("$dir/nginx.pid");
        ($pid) = $t =~ /(\d+)/ if defined $t;
        return $pid;
    }, 10 * $SCALE);
    die "nginx did not write its pid file:\n" . _slurp("$dir/error.log") unless $pid;
    $self->{pid} = $pid;
    $LIVE{"$self"} = $self;
    $CURRENT = $self;

    my $up = wait_until(sub {
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
            PeerPort => $port, Proto => 'tcp', Timeout => 1);
        return $s ? 1 : 0;
    }, 10 * $SCALE, 0.05);
    unless ($up) {
        my $log = _slurp("$dir/error.log");
        $self->stop;
        die "nginx does not accept connections on $port:\n$log";
    }
    wait_until(sub { scalar($self->worker_pids) >= $workers }, 10 * $SCALE);
    return $self;
}

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    my $t = <$fh>;
    close $fh;
    return $t;
}

END {
    for my $srv (values %LIVE) {
        next unless $srv->{owner} == $$;
        $srv->stop;
    }
}

# ----------------------------------------------------------------------
# HTTP client

sub _connect {
    my ($port, $timeout, %o) = @_;
    if ($o{rcvbuf}) {
        # the receive buffer must be set before connect() to shape the
        # window TCP announces (and its scale factor)
        my $s = IO::Socket::INET->new(Proto => 'tcp',
            ($o{local_addr} ? (LocalAddr => $o{local_addr}) : ()))
            or return undef;
        setsockopt($s, SOL_SOCKET, SO_RCVBUF, pack('i', $o{rcvbuf}));
        $s->connect(Socket::pack_sockaddr_in($port, Socket::inet_aton('127.0.0.1')))
            or return undef;
        binmode $s;
        setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
        return $s;
    }
    my $s = IO::Socket::INET->new(
        PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp',
        Timeout => $timeout // $DEFAULT_TIMEOUT,
        ($o{local_addr} ? (LocalAddr => $o{local_addr}) : ()),
    );
    return undef unless $s;
    binmode $s;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    return $s;
}

sub _srv_args {
    if (ref $_[0] && eval { $_[0]->isa('SSETest::Server') }) {
        return @_;
    }
    die "no nginx started\n" unless $CURRENT;
    return ($CURRENT, @_);
}

sub _write_all {
    my ($sock, $data, $timeout) = @_;
    my $deadline = time() + ($timeout // $DEFAULT_TIMEOUT);
    my $sel = IO::Select->new($sock);
    my $off = 0;
    while ($off < length $data) {
        my $left = $deadline - time();
        return 0 if $left <= 0;
        next unless $sel->can_write($left);
        my $n = syswrite($sock, $data, length($data) - $off, $off);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            return 0;
        }
        $off += $n;
    }
    return 1;
}

sub _build_request {
    my ($method, $path, %o) = @_;
    my $version = $o{http10} ? 'HTTP/1.0' : 'HTTP/1.1';
    my @h;
    my %given = map { lc($_) => 1 } keys %{ $o{headers} || {} };
    push @h, ['Host', 'localhost'] unless $given{host};
    push @h, ['Connection', $o{connection}] if defined $o{connection} && !$given{connection};
    my $body = $o{body};
    if ($o{chunked} && defined $body) {
        push @h, ['Transfer-Encoding', 'chunked'] unless $given{'transfer-encoding'};
        my $enc = '';
        my $size = $o{chunk_size} || 4096;
        for (my $i = 0; $i < length $body; $i += $size) {
            my $part = substr($body, $i, $size);
            $enc .= sprintf("%x\r\n", length $part) . $part . "\r\n";
        }
        $body = $enc . "0\r\n\r\n";
    } elsif (!$given{'content-length'} && !$given{'transfer-encoding'}
             && (defined $body || $method eq 'POST' || $method eq 'PUT')) {
        $body //= '';
        push @h, ['Content-Length', length $body];
    }
    for my $k (sort keys %{ $o{headers} || {} }) {
        my $v = $o{headers}{$k};
        next unless defined $v;
        push @h, [$k, $_] for (ref $v eq 'ARRAY' ? @$v : ($v));
    }
    my $req = "$method $path $version\r\n";
    $req .= "$_->[0]: $_->[1]\r\n" for @h;
    $req .= "\r\n";
    $req .= $body if defined $body;
    return $req;
}

# Parse "HTTP/1.1 200 OK\r\nName: v\r\n..." (without the final blank line)
sub _parse_head {
    my ($head) = @_;
    my @lines = split /\r?\n/, $head;
    my $sl = shift @lines // '';
    my ($proto, $code, $reason) = $sl =~ m{^(HTTP/\d\.\d)\s+(\d{3})\s*(.*)$};
    my (%h, @list);
    for my $l (@lines) {
        my ($n, $v) = $l =~ /^([^:]+):\s*(.*?)\s*$/ or next;
        push @list, [$n, $v];
        my $k = lc $n;
        $h{$k} = exists $h{$k} ? "$h{$k}, $v" : $v;
    }
    return { proto => $proto, status => $code // 0, reason => $reason,
             headers => \%h, header_list => \@list };
}

# de-chunk a complete chunked body; returns (body, complete)
sub _dechunk {
    my ($data) = @_;
    my $out = '';
    my $pos = 0;
    while (1) {
        my $nl = index($data, "\r\n", $pos);
        return ($out, 0) if $nl < 0;
        my $line = substr($data, $pos, $nl - $pos);
        my ($hex) = $line =~ /^([0-9a-fA-F]+)/;
        return ($out, 0) unless defined $hex;
        my $n = hex $hex;
        $pos = $nl + 2;
        return ($out, 1) if $n == 0;
        return ($out, 0) if length($data) < $pos + $n + 2;
        $out .= substr($data, $pos, $n);
        $pos += $n + 2;
    }
}

# http([$srv,] $method, $path, headers => {}, body => $bytes, timeout => 5,
#      port => $other_listen_port)
sub http {
    my ($srv, $method, $path, %o) = _srv_args(@_);
    my $timeout = $o{timeout} // $DEFAULT_TIMEOUT;
    my $sock = _http_send($srv, $method, $path, %o);
    return $sock if ref $sock eq 'HASH';
    return _http_read($sock, $method, $timeout);
}

# http_parallel([$srv,] $n, $method, $path, %opts): $n requests sent on $n
# connections at once, then the answers read (spreads them over workers)
sub http_parallel {
    my ($srv, $n, $method, $path, %o) = _srv_args(@_);
    my @socks = map { _http_send($srv, $method, $path, %o) } 1 .. $n;
    return map { ref $_ eq 'HASH' ? $_ : _http_read($_, $method, $o{timeout} // $DEFAULT_TIMEOUT) } @socks;
}

sub _http_send {
    my ($srv, $method, $path, %o) = @_;
    my $timeout = $o{timeout} // $DEFAULT_TIMEOUT;
    # port: another port of the same server (a second listen)
    my $sock = _connect($o{port} // $srv->{port}, $timeout)
        or return { status => 0, error => "connect: $!", headers => {}, body => '' };
    my $req = $o{raw_request} // _build_request($method, $path,
        connection => 'close', %o);
    _write_all($sock, $req, $timeout)
        or return { status => 0, error => "write failed: $!", headers => {}, body => '' };
    return $sock;
}

sub _http_read {
    my ($sock, $method, $timeout, $keep) = @_;    # $keep: leave $sock open
    my $deadline = time() + $timeout;
    my $sel = IO::Select->new($sock);
    my $buf = '';
    my $err;
    my $res;
    while (1) {
        my $left = $deadline - time();
        if ($left <= 0) {
            $err = 'timeout' unless $method eq 'HEAD' && index($buf, "\r\n\r\n") >= 0;
            last;
        }
        next unless $sel->can_read($left);
        my $n = sysread($sock, $buf, 65536, length $buf);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            $err = "read: $!";
            last;
        }
        last if $n == 0;
        # stop early when the response is complete (keep-alive answers)
        my $he = index($buf, "\r\n\r\n");
        if ($he >= 0) {
            my $p = _parse_head(substr($buf, 0, $he));
            my $rest = substr($buf, $he + 4);
            if ($method eq 'HEAD') {
                # no body may follow: linger a little to catch stray bytes
                $deadline = time() + 0.5 if $deadline > time() + 0.5;
            } elsif ($p->{status} == 204 || $p->{status} == 304) {
                last;
            } elsif (defined $p->{headers}{'content-length'}) {
                last if length($rest) >= $p->{headers}{'content-length'};
            } elsif (($p->{headers}{'transfer-encoding'} // '') =~ /chunked/i) {
                my (undef, $done) = _dechunk($rest);
                last if $done;
            }
        }
    }
    close $sock unless $keep;
    my $he = index($buf, "\r\n\r\n");
    if ($he < 0) {
        return { status => 0, error => $err // 'no response head',
                 headers => {}, body => '', raw => $buf };
    }
    $res = _parse_head(substr($buf, 0, $he));
    my $rest = substr($buf, $he + 4);
    if ($method eq 'HEAD') {
        $res->{body} = $rest;     # should be empty
    } elsif (($res->{headers}{'transfer-encoding'} // '') =~ /chunked/i) {
        my ($b, $done) = _dechunk($rest);
        $res->{body} = $b;
        $res->{incomplete} = 1 unless $done;
    } elsif (defined $res->{headers}{'content-length'}) {
        my $cl = $res->{headers}{'content-length'};
        $res->{incomplete} = 1 if length($rest) < $cl;
        $res->{body} = substr($rest, 0, $cl);
    } else {
        $res->{body} = $rest;
    }
    $res->{raw} = $buf;
    $res->{error} = $err if $err && $res->{incomplete};
    $res->{worker} = $res->{headers}{'x-worker'};
    if (($res->{headers}{'content-type'} // '') =~ m{^application/json}i) {
        $res->{json} = eval { json_decode($res->{body}) };
        $res->{json_error} = $@ if $@;
    }
    return $res;
}

# publish([$srv,] $path, $data, type => 'x', content_type => '...',
#         method => 'POST', headers => {})
sub publish {
    my ($srv, $path, $data, %o) = _srv_args(@_);
    my $method = $o{method} // 'POST';
    my %h = %{ $o{headers} || {} };
    $h{'Content-Type'} = $o{content_type} if defined $o{content_type};
    $h{'Content-Type'} //= 'text/plain';
    if (defined $o{type}) {
        $path .= ($path =~ /\?/ ? '&' : '?') . 'event=' . url_encode($o{type});
    }
    return http($srv, $method, $path, %o, headers => \%h, body => $data);
}

# keepalive_conn([$srv,] path => '/status'): a connection that has had one
# GET answered and is kept alive; returns { sock, status, worker } (pass
# sock to sse_connect(..., sock => $sock) to send the next request on it),
# or undef.  The answer must carry a Content-Length.
sub keepalive_conn {
    my ($srv, %o) = _srv_args(@_);
    my $timeout = $o{timeout} // $DEFAULT_TIMEOUT;
    my $sock = _connect($srv->{port}, $timeout) or return undef;
    _write_all($sock, _build_request('GET', $o{path} // '/status'), $timeout)
        or return undef;
    my $sel = IO::Select->new($sock);
    my $deadline = time() + $timeout;
    my $buf = '';
    while (time() < $deadline) {
        my $he = index($buf, "\r\n\r\n");
        if ($he >= 0) {
            my $p = _parse_head(substr($buf, 0, $he));
            my $cl = $p->{headers}{'content-length'};
            return undef unless defined $cl;
            if (length($buf) >= $he + 4 + $cl) {
                return undef if length($buf) > $he + 4 + $cl;   # stray bytes
                return undef if ($p->{headers}{connection} // '') =~ /close/i;
                return { sock => $sock, status => $p->{status},
                         worker => $p->{headers}{'x-worker'} };
            }
        }
        next unless $sel->can_read($deadline - time());
        my $n = sysread($sock, $buf, 65536, length $buf);
        return undef unless $n;
    }
    return undef;
}

# keepalive_http([$srv,] $conn, $method, $path, %opts): a request sent on the
# kept-alive connection $conn (from keepalive_conn), so it is answered by
# the worker that answered the first ($conn->{worker}); the connection is
# left open for the next one.  %opts and the answer as for http() (the
# answer must carry a Content-Length or be chunked).  A body is given with
# body => ..., and publish()'s content_type/type with those names.
sub keepalive_http {
    my ($srv, $conn, $method, $path, %o) = _srv_args(@_);
    my $timeout = $o{timeout} // $DEFAULT_TIMEOUT;
    my %h = %{ $o{headers} || {} };
    if (defined $o{body} || $method eq 'POST' || $method eq 'PUT') {
        $h{'Content-Type'} = $o{content_type} if defined $o{content_type};
        $h{'Content-Type'} //= 'text/plain';
    }
    if (defined $o{type}) {
        $path .= ($path =~ /\?/ ? '&' : '?') . 'event=' . url_encode($o{type});
    }
    my $sock = $conn->{sock}
        or return { status => 0, error => 'no connection', headers => {}, body => '' };
    _write_all($sock, _build_request($method, $path, %o, headers => \%h), $timeout)
        or return { status => 0, error => "write failed: $!", headers => {}, body => '' };
    return _http_read($sock, $method, $timeout, 1);
}

sub status {
    my ($srv, %o) = _srv_args(@_);
    my $r = http($srv, 'GET', $o{path} // '/status');
    return undef unless $r->{status} == 200;
    return $r->{json};
}

# the exact bytes /tmp/decisions.md says an event is written as
sub sse_frame {
    my ($id, $type, $data) = @_;
    my $f = "id: $id\n";
    $f .= "event: $type\n" if defined $type && $type ne 'message';
    $f .= "data: $_\n" for split /\r\n|\n|\r/, $data, -1;
    return "$f\n";
}

sub url_encode {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9\-_.~])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

# check_json_error($res, $status, $name): one-line JSON object with "error"
sub check_json_error {
    my ($r, $code, $name) = @_;
    my $ok = 1;
    $ok &&= Test::More::is($r->{status}, $code, "$name: status $code");
    my $ct = $r->{headers}{'content-type'} // '';
    my $body = $r->{body} // '';
    my $one_line = $body =~ /\A\{[^\r\n]*\}\r?\n?\z/;
    my $j = eval { json_decode($body) };
    $ok &&= Test::More::ok($ct =~ m{^application/json}i
            && $one_line && ref $j eq 'HASH' && defined $j->{error}
            && !ref $j->{error} && length $j->{error},
        "$name: body is one-line JSON {\"error\":...}")
        or Test::More::diag("content-type: $ct\nbody: " . _show($body));
    return $ok;
}

sub _show {
    my ($s) = @_;
    $s = substr($s, 0, 300) . '...' if length $s > 300;
    $s =~ s/([^\x20-\x7e])/sprintf('\\x%02x', ord $1)/ge;
    return $s;
}

# ----------------------------------------------------------------------
# ids

sub parse_id {
    my ($id) = @_;
    return () unless defined $id && $id =~ /\A(\d+)-(\d+)\z/;
    return ($1, $2);
}

sub _numcmp {            # compare decimal strings of any length
    my ($a, $b) = @_;
    $a =~ s/^0+(?=\d)//;
    $b =~ s/^0+(?=\d)//;
    return length($a) <=> length($b) || $a cmp $b;
}

sub id_cmp {
    my ($x, $y) = @_;
    my @a = parse_id($x); @a or die "bad id '" . ($x // 'undef') . "'";
    my @b = parse_id($y); @b or die "bad id '" . ($y // 'undef') . "'";
    return _numcmp($a[0], $b[0]) || _numcmp($a[1], $b[1]);
}

sub ids_strictly_increasing {
    my @ids = @_;
    for my $i (1 .. $#ids) {
        for my $x ($ids[$i - 1], $ids[$i]) {
            return 0 unless defined $x && $x =~ /\A\d+-\d+\z/;
        }
        return 0 unless id_cmp($ids[$i - 1], $ids[$i]) < 0;
    }
    return 1;
}

# ----------------------------------------------------------------------
# streams

sub sse_connect {
    my ($srv, $path, %o) = _srv_args(@_);
    my $s = SSETest::Stream->_open($srv, $path, %o);
    $s->_read_head($o{timeout} // $DEFAULT_TIMEOUT) unless $o{defer} || !$s->{sock};
    return $s;
}

# sse_connect_many([$srv,] $n, $path_or_coderef, %opts): opens $n streams,
# all requests sent first, then the answers read.
sub sse_connect_many {
    my ($srv, $n, $path, %o) = _srv_args(@_);
    my @s;
    for my $i (0 .. $n - 1) {
        my $p = ref $path eq 'CODE' ? $path->($i) : $path;
        push @s, SSETest::Stream->_open($srv, $p, %o);
    }
    $_->_read_head($o{timeout} // $DEFAULT_TIMEOUT) for grep { $_->{sock} } @s;
    return @s;
}

# make_certificate([$dir]): a self-signed certificate for localhost,
# cert.pem and key.pem in $dir (a new temporary folder when none is
# given); returns the folder, dies when openssl cannot make one
sub make_certificate {
    my ($dir) = @_;
    $dir //= tempdir('sse-cert-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost "
           . "-keyout '$dir/key.pem' -out '$dir/cert.pem' >/dev/null 2>&1") == 0
        or die "openssl could not make a certificate (make deps installs openssl)\n";
    return $dir;
}

# proc_mem($pid): a process's data size (VmData: what malloc took from the
# kernel) and its RSS, in kB: { data, rss }, -1 where unknown
sub proc_mem {
    my ($pid) = @_;
    my $st = _slurp("/proc/$pid/status") // '';
    my ($data) = $st =~ /^VmData:\s+(\d+) kB/m;
    my ($rss)  = $st =~ /^VmRSS:\s+(\d+) kB/m;
    return { data => $data // -1, rss => $rss // -1 };
}

# stop_process($pid): SIGSTOP, and back only once the process stands
# still.  kill() only queues the signal: until the process runs to take it,
# it still sits in epoll_wait, and the kernel may hand it (and no other
# worker) the next connection, which then waits for SIGCONT.
sub stop_process {
    my ($pid) = @_;
    kill('STOP', $pid) or return 0;
    return wait_until(sub { ((SSETest::Server::_proc_stat($pid))[0] // '') eq 'T' }, 5, 0.005) ? 1 : 0;
}

# ----------------------------------------------------------------------
# tiny JSON

sub json_decode {
    my ($text) = @_;
    die "json: undefined input\n" unless defined $text;
    my $p = 0;
    my $v = _jv(\$text, \$p);
    _jws(\$text, \$p);
    die "json: trailing garbage at $p\n" if $p < length $text;
    return $v;
}

sub _jws { my ($t, $p) = @_; pos($$t) = $$p; $$t =~ /\G[ \t\r\n]*/gc; $$p = pos($$t) }

sub _jv {
    my ($t, $p) = @_;
    _jws($t, $p);
    my $c = substr($$t, $$p, 1);
    die "json: unexpected end\n" if $c eq '';
    if ($c eq '{') {
        $$p++;
        my %h;
        _jws($t, $p);
        if (substr($$t, $$p, 1) eq '}') { $$p++; return \%h }
        while (1) {
            _jws($t, $p);
            die "json: expected string key at $$p\n" unless substr($$t, $$p, 1) eq '"';
            my $k = _jstr($t, $p);
            _jws($t, $p);
            die "json: expected ':' at $$p\n" unless substr($$t, $$p, 1) eq ':';
            $$p++;
            die "json: duplicate key '$k'\n" if exists $h{$k};
            $h{$k} = _jv($t, $p);
            _jws($t, $p);
            my $d = substr($$t, $$p++, 1);
            return \%h if $d eq '}';
            die "json: expected ',' or '}' at " . ($$p - 1) . "\n" unless $d eq ',';
        }
    }
    if ($c eq '[') {
        $$p++;
        my @a;
        _jws($t, $p);
        if (substr($$t, $$p, 1) eq ']') { $$p++; return \@a }
        while (1) {
            push @a, _jv($t, $p);
            _jws($t, $p);
            my $d = substr($$t, $$p++, 1);
            return \@a if $d eq ']';
            die "json: expected ',' or ']' at " . ($$p - 1) . "\n" unless $d eq ',';
        }
    }
    return _jstr($t, $p) if $c eq '"';
    pos($$t) = $$p;
    if ($$t =~ /\G(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?)/gc) {
        $$p = pos($$t);
        return $1 + 0;
    }
    if ($$t =~ /\G(true|false|null)/gc) {
        $$p = pos($$t);
        return $1 eq 'true' ? JSONBool::TRUE() : $1 eq 'false' ? JSONBool::FALSE() : undef;
    }
    die "json: unexpected '$c' at $$p\n";
}

my %ESC = ('"' => '"', '\\' => '\\', '/' => '/', b => "\b", f => "\f",
           n => "\n", r => "\r", t => "\t");

sub _jstr {
    my ($t, $p) = @_;
    $$p++;                                    # opening quote
    my $out = '';
    while (1) {
        die "json: unterminated string\n" if $$p >= length $$t;
        my $c = substr($$t, $$p, 1);
        if ($c eq '"') { $$p++; last }
        if ($c eq '\\') {
            my $e = substr($$t, $$p + 1, 1);
            if ($e eq 'u') {
                my $h = substr($$t, $$p + 2, 4);
                die "json: bad \\u escape\n" unless $h =~ /^[0-9a-fA-F]{4}$/;
                my $cp = hex $h;
                $$p += 6;
                if ($cp >= 0xD800 && $cp <= 0xDBFF
                    && substr($$t, $$p, 2) eq '\\u') {
                    my $lo = hex substr($$t, $$p + 2, 4);
                    if ($lo >= 0xDC00 && $lo <= 0xDFFF) {
                        $cp = 0x10000 + (($cp - 0xD800) << 10) + ($lo - 0xDC00);
                        $$p += 6;
                    }
                }
                my $ch = chr $cp;
                utf8::encode($ch);            # keep strings as UTF-8 bytes
                $out .= $ch;
                next;
            }
            die "json: bad escape \\$e\n" unless exists $ESC{$e};
            $out .= $ESC{$e};
            $$p += 2;
            next;
        }
        die "json: control character in string\n" if ord($c) < 0x20;
        $out .= $c;
        $$p++;
    }
    return $out;
}

sub json_encode {
    my ($v) = @_;
    return 'null' unless defined $v;
    if (ref $v eq 'HASH') {
        return '{' . join(',', map { json_encode("$_") . ':' . json_encode($v->{$_}) }
                          sort keys %$v) . '}';
    }
    if (ref $v eq 'ARRAY') {
        return '[' . join(',', map { json_encode($_) } @$v) . ']';
    }
    return $$v ? 'true' : 'false' if ref $v eq 'JSONBool';
    return $v if $v =~ /\A-?(?:0|[1-9]\d*)\z/;
    my $s = $v;
    $s =~ s/(["\\])/\\$1/g;
    $s =~ s/([\x00-\x1f])/sprintf('\\u%04x', ord $1)/ge;
    return qq{"$s"};
}

package JSONBool;
use overload 'bool' => sub { ${ $_[0] } }, '""' => sub { ${ $_[0] } ? 'true' : 'false' },
             '==' => sub { (${ $_[0] } ? 1 : 0) == (ref $_[1] ? (${ $_[1] } ? 1 : 0) : $_[1]) },
             'eq' => sub { "$_[0]" eq "$_[1]" }, fallback => 1;
sub TRUE  { bless \(my $t = 1), 'JSONBool' }
sub FALSE { bless \(my $f = 0), 'JSONBool' }

# ----------------------------------------------------------------------
package SSETest::Server;

use strict;
use warnings;
use Time::HiRes qw(time sleep);

sub port { $_[0]{port} }
sub dir  { $_[0]{dir} }
sub pid  { $_[0]{pid} }
sub conf { $_[0]{conf} }
sub url  { "http://127.0.0.1:$_[0]{port}" . ($_[1] // '') }

sub http             { SSETest::http(@_) }
sub publish          { SSETest::publish(@_) }
sub http_parallel    { SSETest::http_parallel(@_) }
sub status           { SSETest::status(@_) }
sub sse_connect      { SSETest::sse_connect(@_) }
sub sse_connect_many { SSETest::sse_connect_many(@_) }
sub keepalive_conn   { SSETest::keepalive_conn(@_) }
sub keepalive_http   { SSETest::keepalive_http(@_) }

sub error_log { SSETest::_slurp("$_[0]{dir}/error.log") // '' }

# one number from /status (-1 when unavailable)
sub stat {
    my ($self, $key) = @_;
    my $j = SSETest::status($self);
    return ref $j eq 'HASH' && defined $j->{$key} && !ref $j->{$key} ? $j->{$key} : -1;
}

# wait until /status shows $key == $value
sub wait_stat {
    my ($self, $key, $value, $timeout) = @_;
    return SSETest::wait_until(sub { $self->stat($key) == $value },
                               $timeout // 5 * $SSETest::SCALE, 0.05);
}

# offset into error.log, for error_log_since
sub log_mark { length($_[0]->error_log) }
sub error_log_since { substr($_[0]->error_log, $_[1] // 0) }

# lines matching these are not treated as fatal by stop()
sub allow_log { my $self = shift; push @{ $self->{allow_log} }, @_; }

sub _proc_stat {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return;
    my $l = <$fh>;
    close $fh;
    return unless defined $l && $l =~ /^\d+ \(.*\) (\S) (\d+)/s;
    return ($1, $2);                              # state, ppid
}

sub _cmdline {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/cmdline" or return '';
    local $/;
    my $c = <$fh> // '';
    close $fh;
    $c =~ tr/\0/ /;
    return $c;
}

sub _alive {
    my ($pid) = @_;
    my ($state) = _proc_stat($pid);
    return defined $state && $state ne 'Z' && $state ne 'X';
}

# an nginx process (under valgrind its command line stays valgrind's)
sub _is_nginx {
    my $c = _cmdline($_[0]);
    return $c =~ /^nginx: / || ($SSETest::VALGRIND && $c =~ m{valgrind.*/nginx });
}

# inodes of the sockets listening on $port
sub _listen_inodes {
    my ($port) = @_;
    my %ino;
    for my $f ('/proc/net/tcp', '/proc/net/tcp6') {
        open my $fh, '<', $f or next;
        while (my $l = <$fh>) {
            my @c = split ' ', $l;
            next unless @c > 9 && $c[3] eq '0A' && $c[1] =~ /:([0-9A-F]{4})$/;
            $ino{$c[9]} = 1 if hex($1) == $port;
        }
        close $fh;
    }
    return \%ino;
}

# the process has one of the sockets in %$ino open
sub _has_socket {
    my ($pid, $ino) = @_;
    opendir my $dh, "/proc/$pid/fd" or return 0;
    my $found = 0;
    for my $fd (readdir $dh) {
        my $t = readlink("/proc/$pid/fd/$fd") // next;
        if ($t =~ /^socket:\[(\d+)\]$/ && $ino->{$1}) { $found = 1; last }
    }
    closedir $dh;
    return $found;
}

# inodes of the unix stream sockets (nginx's channels to the master)
sub _unix_stream_inodes {
    my %ino;
    open my $fh, '<', '/proc/net/unix' or return \%ino;
    while (my $l = <$fh>) {
        my @c = split ' ', $l;
        $ino{$c[6]} = 1 if @c > 6 && $c[4] eq '0001';
    }
    close $fh;
    return \%ino;
}

# the worker watches its channel to the master in epoll: nginx adds it
# after every module's init_process, just before "worker process" is set
sub _worker_ready {
    my ($pid, $chan) = @_;
    opendir my $dh, "/proc/$pid/fd" or return 0;
    my @ep = grep { (readlink("/proc/$pid/fd/$_") // '') eq 'anon_inode:[eventpoll]' }
             readdir $dh;
    closedir $dh;
    for my $fd (@ep) {
        my $info = SSETest::_slurp("/proc/$pid/fdinfo/$fd") // next;
        return 1 if grep { $chan->{ hex $_ } } $info =~ /^tfd:.*\bino:([0-9a-f]+)/mg;
    }
    return 0;
}

# under valgrind the process title is not visible: a worker that is
# shutting down is one that has closed its listening sockets
sub _shutting_down {
    my ($self, $pid, $ino) = @_;
    return _cmdline($pid) =~ /shutting down/ unless $SSETest::VALGRIND;
    return !_has_socket($pid, $ino);
}

# all children of the master: workers (incl. shutting down ones)
sub child_pids {
    my ($self) = @_;
    my @p;
    opendir my $dh, '/proc' or return;
    for my $e (readdir $dh) {
        next unless $e =~ /^\d+$/;
        my ($state, $ppid) = _proc_stat($e);
        next unless defined $ppid && $ppid == $self->{pid};
        next if $state eq 'Z';
        push @p, $e + 0;
    }
    closedir $dh;
    return sort { $a <=> $b } @p;
}

# current (not shutting down) worker processes
sub worker_pids {
    my ($self) = @_;
    my $ino = $SSETest::VALGRIND ? _listen_inodes($self->{port}) : {};
    my $chan = $SSETest::VALGRIND ? _unix_stream_inodes() : {};
    return grep {
        ($SSETest::VALGRIND ? _worker_ready($_, $chan) : _cmdline($_) =~ /worker process/)
            && !$self->_shutting_down($_, $ino);
    } $self->child_pids;
}

sub shutting_down_pids {
    my ($self) = @_;
    my $ino = $SSETest::VALGRIND ? _listen_inodes($self->{port}) : {};
    return grep { $self->_shutting_down($_, $ino) } $self->child_pids;
}

sub rss_kb {
    my ($self, $pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (my $l = <$fh>) { return $1 if $l =~ /^VmRSS:\s+(\d+)\s+kB/ }
    return undef;
}

# nginx -s reload; waits for a new set of workers.  Returns 1 on success.
sub reload {
    my ($self, %o) = @_;
    my %old = map { $_ => 1 } $self->worker_pids;
    $self->{old_workers} = [keys %old];
    kill 'HUP', $self->{pid} or return 0;
    my $ok = SSETest::wait_until(sub {
        my @w = $self->worker_pids;
        @w >= $self->{workers} && !grep { $old{$_} } @w;
    }, $o{timeout} // 10 * $SSETest::SCALE);
    return $ok ? 1 : 0;
}

# wait until all workers from before the last reload have exited
sub old_workers_gone {
    my ($self, $timeout) = @_;
    my @old = @{ $self->{old_workers} || [] };
    return SSETest::wait_until(sub { !grep { _alive($_) } @old },
                               $timeout // 10 * $SSETest::SCALE);
}

sub stop {
    my ($self, %o) = @_;
    return 1 if $self->{stopped};
    return 1 unless $self->{owner} == $$;
    $self->{stopped} = 1;
    delete $SSETest::LIVE{"$self"};
    my $pid = $self->{pid};
    my @children = $self->child_pids;
    my $t0 = time();
    my $clean_quit = 1;
    my $timeout = $o{timeout} // 10 * $SSETest::SCALE;
    if (_alive($pid)) {
        kill 'QUIT', $pid;
        my $gone = SSETest::wait_until(sub { !_alive($pid) }, $timeout, 0.05);
        unless ($gone) {
            $clean_quit = 0;
            kill 'TERM', $pid;
            $gone = SSETest::wait_until(sub { !_alive($pid) }, 3 * $SSETest::SCALE, 0.05);
            kill 'KILL', $pid unless $gone;
        }
    }
    # the workers this master started, if any outlived it
    for my $c (@children) {
        next unless _alive($c) && _is_nginx($c);
        my (undef, $ppid) = _proc_stat($c);
        next unless defined $ppid && ($ppid == $pid || $ppid == 1);
        $clean_quit = 0;
        kill 'KILL', $c;
    }
    $self->{stop_seconds} = time() - $t0;
    my $log = $self->error_log;
    my @allow = @{ $self->{allow_log} };
    my @bad = grep {
        my $l = $_;
        (grep { $l =~ $_ } @SSETest::FATAL_LOG) && !(grep { $l =~ $_ } @allow);
    } split /\n/, $log;
    my $tb = Test::More->builder;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    Test::More::ok(!@bad, "nginx error.log has no alert/emerg/crit/crash lines")
        or Test::More::diag(join "\n", map { "  $_" } @bad[0 .. ($#bad > 30 ? 30 : $#bad)]);
    Test::More::ok($clean_quit, "nginx exited on QUIT within "
                   . $timeout . "s, with its workers")
        or Test::More::diag(sprintf "stop took %.1fs", $self->{stop_seconds});
    # nginx has exited: its valgrind logs are complete
    my $vg_ok = $SSETest::VALGRIND ? SSETest::_valgrind_check($self->{dir}, 'nginx') : 1;
    if ($ENV{KEEP}) {
        Test::More::diag("nginx dir kept: $self->{dir}");
    }
    return !@bad && $clean_quit && $vg_ok;
}

sub DESTROY {
    my ($self) = @_;
    return if $self->{stopped} || !defined $self->{owner} || $self->{owner} != $$;
    local ($@, $!, $?);
    $self->stop;
}

# ----------------------------------------------------------------------
package SSETest::Stream;

use strict;
use warnings;
use IO::Select;
use Time::HiRes qw(time sleep);
use Socket qw(SOL_SOCKET SO_RCVBUF);

sub _open {
    my ($class, $srv, $path, %o) = @_;
    my $self = bless {
        srv => $srv, path => $path, opts => \%o, rbuf => '', raw => '',
        wire => '', eof => 0, ended => 0, head_done => 0,
        parser => SSETest::Parser->new, queue => [], status => 0,
        headers => {},
    }, $class;
    # sock: a connection already open (kept alive after an earlier answer)
    my $sock = $o{sock} // SSETest::_connect($srv->{port}, $o{timeout} // $SSETest::DEFAULT_TIMEOUT,
                                 local_addr => $o{local_addr}, rcvbuf => $o{rcvbuf});
    unless ($sock) {
        $self->{error} = "connect: $!";
        $self->{eof} = 1;
        return $self;
    }
    $self->{sock} = $sock;
    my %h = (Accept => 'text/event-stream', %{ $o{headers} || {} });
    my $req = SSETest::_build_request($o{method} // 'GET', $path,
        http10 => $o{http10}, headers => \%h,
        ($o{close} ? (connection => 'close') : ()));
    SSETest::_write_all($sock, $req) or $self->{error} = "write: $!";
    return $self;
}

sub status  { $_[0]{status} }
sub headers { $_[0]{headers} }
sub header  { $_[0]{headers}{ lc $_[1] } }
sub worker  { $_[0]{headers}{'x-worker'} }
sub raw     { $_[0]->_pump(0); $_[0]{raw} }
sub wire    { $_[0]{wire} }          # body bytes as received (chunked, gzip)
sub body    { $_[0]{raw} }
sub json    { my $j = eval { SSETest::json_decode($_[0]{raw}) }; $j }
sub comments { @{ $_[0]{parser}{all_comments} } }
sub retry   { $_[0]{parser}{retry} }
sub last_event_id { $_[0]{parser}{last_event_id} }

sub _read_head {
    my ($self, $timeout) = @_;
    my $deadline = time() + $timeout;
    while (!$self->{head_done}) {
        my $he = index($self->{rbuf}, "\r\n\r\n");
        if ($he >= 0) {
            my $p = SSETest::_parse_head(substr($self->{rbuf}, 0, $he));
            $self->{rbuf} = substr($self->{rbuf}, $he + 4);
            @$self{qw(status headers header_list proto reason)} =
                @$p{qw(status headers header_list proto reason)};
            $self->{head_done} = 1;
            $self->{head_time} = time();
            my $te = $self->{headers}{'transfer-encoding'} // '';
            $self->{chunked} = $te =~ /chunked/i ? 1 : 0;
            $self->{cl} = $self->{headers}{'content-length'};
            if (($self->{headers}{'content-encoding'} // '') =~ /gzip/i) {
                require Compress::Raw::Zlib;
                my ($inf, $st) = Compress::Raw::Zlib::Inflate->new(
                    -WindowBits => Compress::Raw::Zlib::WANT_GZIP(),
                    -ConsumeInput => 1);
                $self->{inflate} = $inf;
            }
            if (($self->{opts}{method} // 'GET') eq 'HEAD') {
                $self->{ended} = 1;
                $self->{no_body} = 1;
            }
            $self->_decode;
            # an error answer: read all of it
            if ($self->{status} != 200 && !$self->{ended}) {
                $self->_pump_until(sub { $self->{ended} || $self->{eof} },
                                   $deadline - time());
            }
            last;
        }
        last if $self->{eof};
        my $left = $deadline - time();
        if ($left <= 0) {
            $self->{error} //= 'timeout reading response head' if $timeout > 0;
            last;
        }
        $self->_read_sock($left);
    }
    $self->{error} //= 'connection closed before response head'
        if !$self->{head_done} && $self->{eof};
    return $self->{head_done};
}

sub _read_sock {
    my ($self, $timeout) = @_;
    return 0 if $self->{eof} || !$self->{sock};
    my $sel = IO::Select->new($self->{sock});
    return 0 unless $sel->can_read($timeout > 0 ? $timeout : 0);
    my $total = 0;
    # read_max => bytes (a sse_connect option): one read of at most that
    # many bytes a call, as a client that reads slowly (the head included)
    my $max = $self->{opts}{read_max};
    while (1) {
        my $n = sysread($self->{sock}, my $b, $max || 262144);
        if (!defined $n) {
            next if $!{EINTR};
            $self->{eof} = 1;
            $self->{read_error} = "$!";
            last;
        }
        if ($n == 0) { $self->{eof} = 1; $self->{eof_time} = time(); last }
        $total += $n;
        $self->{rbuf} .= $b;
        last if $max;
        last unless $sel->can_read(0);
        last if $total > 4 * 1024 * 1024;
    }
    return $total;
}

# move rbuf into raw (de-chunking / inflating) and feed the parser
sub _decode {
    my ($self) = @_;
    return unless $self->{head_done};
    my $new = '';
    if ($self->{no_body}) {
        $self->{extra} .= $self->{rbuf};
        $self->{rbuf} = '';
        return;
    }
    if ($self->{chunked}) {
        my $rb = \$self->{rbuf};
        my $pos = 0;
        my $len = length $$rb;
        while (!$self->{ended}) {
            if (!$self->{chunk_left}) {
                my $nl = index($$rb, "\r\n", $pos);
                last if $nl < 0;
                my $line = substr($$rb, $pos, $nl - $pos);
                if ($self->{need_crlf}) {
                    # CRLF after a chunk's data
                    $self->{protocol_error} = "missing CRLF after chunk" if $nl != $pos;
                    $pos = $nl + 2;
                    $self->{need_crlf} = 0;
                    next;
                }
                my ($hex) = $line =~ /^([0-9a-fA-F]+)/;
                unless (defined $hex) {
                    $self->{protocol_error} = "bad chunk size line '$line'";
                    $self->{ended} = 1;
                    last;
                }
                $pos = $nl + 2;
                my $n = hex $hex;
                if ($n == 0) { $self->{ended} = 1; $self->{end_time} = time(); last }
                $self->{chunk_left} = $n;
            }
            my $avail = $len - $pos;
            my $take = $avail < $self->{chunk_left} ? $avail : $self->{chunk_left};
            last if $take <= 0;
            $new .= substr($$rb, $pos, $take);
            $pos += $take;
            $self->{chunk_left} -= $take;
            $self->{need_crlf} = 1 if $self->{chunk_left} == 0;
        }
        substr($$rb, 0, $pos, '') if $pos;
    } else {
        $new = $self->{rbuf};
        $self->{rbuf} = '';
        if (defined $self->{cl}) {
            my $have = length($self->{wire}) + length($new);
            $new = substr($new, 0, $self->{cl} - length $self->{wire})
                if $have > $self->{cl};
            $self->{ended} = 1 if length($self->{wire}) + length($new) >= $self->{cl};
        }
    }
    return unless length $new;
    $self->{wire} .= $new;
    if ($self->{inflate}) {
        my $out;
        my $in = $new;
        $self->{inflate}->inflate($in, $out);
        $new = $out // '';
    }
    $self->{raw} .= $new;
    $self->{parser}->feed($new) if $self->{status} == 200;
    push @{ $self->{queue} }, $self->{parser}->take;
}

sub _pump {
    my ($self, $timeout) = @_;
    $self->_read_head($timeout) unless $self->{head_done};
    return 0 unless $self->{head_done};
    my $n = $self->_read_sock($timeout);
    $self->_decode;
    if (($self->{eof} || $self->{ended}) && !$self->{finished}) {
        $self->{finished} = 1;
        $self->{parser}->finish;
        push @{ $self->{queue} }, $self->{parser}->take;
    }
    return $n;
}

sub _pump_until {
    my ($self, $cond, $timeout) = @_;
    my $deadline = time() + ($timeout // $SSETest::DEFAULT_TIMEOUT);
    while (1) {
        return 1 if $cond->();
        if ($self->{eof} || $self->{ended}) {
            $self->_pump(0) unless $self->{finished};
            return $cond->() ? 1 : 0;
        }
        my $left = $deadline - time();
        return 0 if $left <= 0;
        $self->_pump($left);
    }
}

# finish a deferred connect
sub wait_headers {
    my ($self, $timeout) = @_;
    return $self->_read_head($timeout // $SSETest::DEFAULT_TIMEOUT);
}

# read_events(count => n, timeout => s): the next n events (fewer when the
# time runs out or the stream ends).  Without count: every event that
# arrives within timeout (default 0: only what is already there).
sub read_events {
    my ($self, %o) = @_;
    my $timeout = $o{timeout} // (defined $o{count} ? $SSETest::DEFAULT_TIMEOUT : 0);
    if (defined $o{count}) {
        $self->_pump_until(sub { @{ $self->{queue} } >= $o{count} }, $timeout);
        $self->_pump(0) unless @{ $self->{queue} } >= $o{count};
        my $n = @{ $self->{queue} } < $o{count} ? @{ $self->{queue} } : $o{count};
        my @ev = splice @{ $self->{queue} }, 0, $n;
        return wantarray ? @ev : scalar @ev;
    }
    $self->_pump_until(sub { 0 }, $timeout);
    $self->_pump(0);
    my @ev = splice @{ $self->{queue} };
    return wantarray ? @ev : scalar @ev;
}

sub pending_events { scalar @{ $_[0]{queue} } }

# body bytes received since the previous take_raw (or since the start)
sub take_raw {
    my ($self) = @_;
    $self->_pump(0);
    my $c = $self->{raw_cursor} // 0;
    $self->{raw_cursor} = length $self->{raw};
    return substr($self->{raw}, $c);
}

# wait until the bytes not yet taken by take_raw match $re
sub wait_new {
    my ($self, $re, $timeout) = @_;
    my $c = $self->{raw_cursor} // 0;
    return $self->_pump_until(sub { substr($self->{raw}, $c) =~ $re }, $timeout);
}

# trickle($bytes, $timeout): reads at most $bytes from the socket (waiting up
# to $timeout for some), as a client that reads slowly; returns the count
sub trickle {
    my ($self, $bytes, $timeout) = @_;
    $self->_read_head($timeout) unless $self->{head_done};
    return 0 if $self->{eof} || !$self->{sock} || !$self->{head_done};
    my $sel = IO::Select->new($self->{sock});
    return 0 unless $sel->can_read($timeout // 0);
    my $n = sysread($self->{sock}, my $b, $bytes);
    if (!$n) {
        $self->{eof} = 1;
        $self->{eof_time} = time() if defined $n;
        $n = 0;
    }
    $self->{rbuf} .= $b if $n;
    $self->_decode;
    return $n;
}

# the events parsed so far, without reading the socket (after trickle)
sub take_parsed { my $s = shift; return splice @{ $s->{queue} } }

# drop parsed events not yet read (after raw-level checks)
sub discard_events { my $s = shift; $s->_pump(0); return splice @{ $s->{queue} } }

# wait_for(qr/.../, timeout): raw (de-chunked) body matches
sub wait_for {
    my ($self, $re, $timeout) = @_;
    return $self->_pump_until(sub { $self->{raw} =~ $re }, $timeout);
}

# wait until raw holds at least $n bytes
sub wait_bytes {
    my ($self, $n, $timeout) = @_;
    return $self->_pump_until(sub { length($self->{raw}) >= $n }, $timeout);
}

# is_closed(timeout): the server ended the stream (EOF, or the chunked
# terminator on a kept-alive connection)
sub is_closed {
    my ($self, $timeout) = @_;
    return $self->_pump_until(sub { $self->{eof} || $self->{ended} }, $timeout // 0);
}

sub ended_cleanly { $_[0]{ended} && !$_[0]{protocol_error} }

sub close {
    my ($self) = @_;
    if ($self->{sock}) {
        CORE::close $self->{sock};
        delete $self->{sock};
    }
    $self->{eof} = 1;
    $self->{closed_by_client} = 1;
}

# close with an RST instead of a FIN
sub abort {
    my ($self) = @_;
    if ($self->{sock}) {
        setsockopt($self->{sock}, SOL_SOCKET, Socket::SO_LINGER(), pack('ii', 1, 0));
    }
    $self->close;
}

sub DESTROY { my $s = shift; CORE::close $s->{sock} if $s->{sock} }

# ----------------------------------------------------------------------
# WHATWG text/event-stream parser (on bytes)
package SSETest::Parser;

use strict;
use warnings;

sub new {
    return bless {
        buf => '', data => '', type => '', id_field => undef,
        last_event_id => '', retry => undef, pending_comments => [],
        all_comments => [], out => [], started => 0, has_data => 0,
    }, shift;
}

sub feed {
    my ($p, $bytes) = @_;
    $p->{buf} .= $bytes;
    if (!$p->{started}) {
        return if length($p->{buf}) < 3 && "\xEF\xBB\xBF" =~ /^\Q$p->{buf}\E/;
        $p->{buf} =~ s/\A\xEF\xBB\xBF//;
        $p->{started} = 1;
    }
    $p->_lines(0);
}

sub finish {
    my ($p) = @_;
    $p->{started} = 1;
    $p->_lines(1);
    # an unterminated last line/event is discarded (WHATWG)
    $p->{buf} = '';
}

sub take { my $p = shift; return splice @{ $p->{out} } }

sub _lines {
    my ($p, $eof) = @_;
    my $buf = \$p->{buf};
    my $len = length $$buf;
    my $pos = 0;
    while ($pos < $len) {
        pos($$buf) = $pos;
        last unless $$buf =~ /\G([^\r\n]*)(\r\n|\n|\r)/g;
        my ($line, $end) = ($1, $2);
        # a CR as the very last byte may be the first half of CRLF
        last if !$eof && $end eq "\r" && pos($$buf) == $len;
        $pos = pos($$buf);
        $p->_line($line);
    }
    substr($$buf, 0, $pos, '') if $pos;
}

sub _line {
    my ($p, $line) = @_;
    if ($line eq '') { return $p->_dispatch }
    if (substr($line, 0, 1) eq ':') {
        my $c = substr($line, 1);
        push @{ $p->{pending_comments} }, $c;
        push @{ $p->{all_comments} }, $c;
        return;
    }
    my ($field, $value);
    my $i = index($line, ':');
    if ($i >= 0) {
        $field = substr($line, 0, $i);
        $value = substr($line, $i + 1);
        $value =~ s/\A //;
    } else {
        ($field, $value) = ($line, '');
    }
    if ($field eq 'event') { $p->{type} = $value }
    elsif ($field eq 'data') { $p->{data} .= "$value\n"; $p->{has_data} = 1 }
    elsif ($field eq 'id') {
        if (index($value, "\0") < 0) {
            $p->{last_event_id} = $value;
            $p->{id_field} = $value;
        }
    }
    elsif ($field eq 'retry') { $p->{retry} = $value if $value =~ /\A[0-9]+\z/ }
    else { push @{ $p->{unknown_fields} }, $field }
}

sub _dispatch {
    my ($p) = @_;
    if ($p->{data} eq '') {
        $p->{type} = '';
        $p->{id_field} = undef;
        return;
    }
    my $data = $p->{data};
    $data =~ s/\n\z//;
    push @{ $p->{out} }, {
        id => $p->{id_field},
        last_event_id => $p->{last_event_id},
        event => ($p->{type} ne '' ? $p->{type} : 'message'),
        data => $data,
        comments => [ @{ $p->{pending_comments} } ],
    };
    $p->{data} = '';
    $p->{type} = '';
    $p->{id_field} = undef;
    $p->{pending_comments} = [];
}

1;

package SSERedis;

# Redis for the tests of the module's Redis mode.  Perl core modules only.
#
#   my $r = SSERedis->start(requirepass => 'pw', users => ['alice on >pw ~* &* +@all'],
#                           db => 2, persist => 1, config => ['maxclients 100']);
#   $r->url;                     # redis://:pw@127.0.0.1:<port>  (url(db => 2), url(user => ..))
#   $r->cmd('XADD', 'sse:log', '*', channel => 'news', data => 'x');   # decoded reply
#   my @e = $r->xrange_all('sse:log');      # ({id, fields => {..}, pairs => [..]}, ...)
#   $r->stop;  $r->start;  $r->kill;        # SHUTDOWN NOSAVE, same port again, SIGKILL
#
#   my $f = SSERedis::Fake->start(mode => 'garbage');      # or silent, close_mid_reply,
#   my $f = SSERedis::Fake->start(mode => 'loading', loading_for => 3, backend_port => $r->port);
#   my $p = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port);
#   $p->cut; $p->restore;                   # the link through the proxy goes away / comes back
#   $p->hang; $p->restore;                  # nothing gets through (connections stay open) / back
#
#   my $A = start_node(redis => $r, name => 'A', http => 'sse_history 1000;');
#   wait_redis($A, 'down', 5);  kill_node($A);  my $s = SSERedis::Sub->new($A, '/events/x');
#
# Every redis-server and fake server started here is stopped by pid when
# the test ends (END), whatever happened; forked helpers never run END.

use strict;
use warnings;

use IO::Socket::INET;
use IO::Select;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use File::Temp qw(tempdir);
use Errno;
use Exporter 'import';
use SSETest ();

our @EXPORT = qw(start_node node_ready wait_redis redis_state ingress_nodes kill_node
                 prometheus log_lines warmup_channel close_inherited_fds
                 ev_sig same_events first_diff entries_as_events);

our $REDIS_BIN = $ENV{REDIS_BIN} || '/usr/bin/redis-server';
our %LIVE;          # pid => object (redis servers and fakes not yet stopped)
our $OWNER = $$;

END {
    if ($$ == $OWNER) {
        my $rc = $?;
        # nginx first (its stop() checks error.log), then what it talks to
        for my $srv (values %SSETest::LIVE) {
            next unless ($srv->{owner} // 0) == $$;
            $srv->stop;
        }
        for my $o (values %LIVE) {
            next unless ($o->{owner} // 0) == $$;
            $o->_reap_hard;
        }
        $? = $rc;
    }
}

# a test killed (timeout, ^C) or whose output pipe is gone (prove | head)
# still runs END, so its redis-servers, fakes and nginx are stopped
for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub { exit 128 } unless $SIG{$sig};
}
$SIG{PIPE} = 'IGNORE' unless $SIG{PIPE};

sub _free_port { return SSETest::_free_port() }

# the fds a forked child inherited from the test (streams, servers) let
# go, so that the test's own closes still reach nginx.  They become
# /dev/null rather than closed: PerlIO counts the fds its handles own, and
# a number reused behind its back would never really be closed.
sub close_inherited_fds {
    my %keep = map { $_ => 1 } 0, 1, 2, @_;
    opendir my $dh, '/proc/self/fd' or return;
    my @fds = grep { /^\d+$/ && !$keep{$_} } readdir $dh;
    closedir $dh;
    my $null = POSIX::open('/dev/null', POSIX::O_RDWR()) // return;
    POSIX::dup2($null, $_) for grep { $_ != $null } @fds;
    POSIX::close($null);
}

# ----------------------------------------------------------------------
# redis-server

sub start {
    my ($self, %o) = @_;
    if (ref $self) { @$self{ keys %o } = values %o } else { $self = $self->_new(%o) }
    die "redis-server already running (pid $self->{pid})\n" if $self->alive;
    $self->_write_conf;
    my $out = "$self->{dir}/redis.out";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out;
        open STDERR, '>&', \*STDOUT;
        exec($REDIS_BIN, "$self->{dir}/redis.conf") or POSIX::_exit(127);
    }
    $self->{pid} = $pid;
    $self->{owner} = $$;
    $self->{starts}++;
    $LIVE{$pid} = $self;
    delete $self->{admin};
    my $up = SSETest::wait_until(sub {
        return 0 unless $self->alive;
        my $c = eval { SSERedis::Client->new(port => $self->{port}, timeout => 1) } or return 0;
        my $r = eval { $c->cmd('PING') };
        return defined $r && ($r eq 'PONG' || "$r" =~ /^NOAUTH/) ? 1 : 0;
    }, 15, 0.02);
    unless ($up) {
        my $log = ($self->log_text // '') . (SSETest::_slurp($out) // '');
        $self->_reap_hard;
        die "redis-server did not come up on port $self->{port}:\n$log\n";
    }
    return $self;
}

sub _new {
    my ($class, %o) = @_;
    my $dir = tempdir('sse-redis-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{KEEP});
    return bless {
        %o, dir => $dir, port => $o{port} // _free_port(),
        users => $o{users} || [], config => $o{config} || [],
        owner => $$, starts => 0,
    }, $class;
}

sub _write_conf {
    my ($self) = @_;
    my $d = $self->{dir};
    my @c = (
        'bind 127.0.0.1', "port $self->{port}", "dir $d", 'daemonize no',
        'protected-mode no', "logfile $d/redis.log", 'loglevel notice',
        'save ""', 'databases 16', 'tcp-keepalive 0',
    );
    if ($self->{persist}) {
        push @c, 'appendonly yes', 'appendfsync always';
    } else {
        push @c, 'appendonly no';
    }
    push @c, "requirepass $self->{requirepass}" if defined $self->{requirepass};
    push @c, "user $_" for @{ $self->{users} };
    push @c, @{ $self->{config} };
    open my $fh, '>', "$d/redis.conf" or die "write redis.conf: $!";
    print $fh map { "$_\n" } @c;
    close $fh;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub dir  { $_[0]{dir} }
sub log_text { SSETest::_slurp("$_[0]{dir}/redis.log") }

sub alive {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    my $w = waitpid($pid, WNOHANG);
    return 1 if $w == 0;
    if ($w == $pid) { $self->{exit_status} = $?; }
    delete $LIVE{$pid};
    $self->{pid} = undef;
    return 0;
}

# redis://[user:password@]127.0.0.1:port[/db]; the requirepass of the
# server is put in unless noauth => 1 or another password/user is given
sub url {
    my ($self, %o) = @_;
    my $auth = '';
    if (defined $o{user}) {
        $auth = "$o{user}:" . ($o{password} // '') . '@';
    } elsif (defined $o{password}) {
        $auth = ":$o{password}\@";
    } elsif (!$o{noauth} && defined $self->{requirepass}) {
        $auth = ":$self->{requirepass}\@";
    }
    my $host = $o{host} // '127.0.0.1';
    my $u = "redis://$auth$host:$self->{port}";
    $u .= "/$o{db}" if defined $o{db};
    return $u;
}

# a new client, authenticated as the default user (requirepass) unless told
sub client {
    my ($self, %o) = @_;
    my %a = (port => $self->{port}, %o);
    $a{password} //= $self->{requirepass} unless exists $o{password} || exists $o{user};
    return SSERedis::Client->new(%a);
}

# one command on the shared admin connection (db 0 unless db => n given
# to the server at start, or a client of its own is used)
sub cmd {
    my ($self, @args) = @_;
    my $c = $self->{admin};
    if (!$c || $c->dead) {
        $c = $self->{admin} = $self->client(db => $self->{db});
    }
    return $c->cmd(@args);
}

# cmd, but an error reply dies
sub call {
    my ($self, @args) = @_;
    my $r = $self->cmd(@args);
    die "redis: @args[0..($#args > 3 ? 3 : $#args)]...: $r\n" if SSERedis::is_error($r);
    return $r;
}

sub _entries {
    my ($reply) = @_;
    return () unless ref $reply eq 'ARRAY';
    return map {
        my ($id, $kv) = @$_;
        my @pairs = @{ $kv || [] };
        my %f;
        for (my $i = 0; $i + 1 < @pairs; $i += 2) { $f{ $pairs[$i] } //= $pairs[$i + 1] }
        { id => $id, fields => \%f, pairs => \@pairs };
    } @$reply;
}

# every entry of a stream, in order: ({id, fields => {f => v}, pairs => [f, v, ...]}, ...)
# (db => n reads another database through a client of its own)
sub xrange_all {
    my ($self, $key, %o) = @_;
    $key //= 'sse:log';
    my $c = defined $o{db} ? $self->client(db => $o{db}) : undef;
    my $reply = $c ? $c->cmd('XRANGE', $key, '-', '+') : $self->cmd('XRANGE', $key, '-', '+');
    die "redis: XRANGE $key: $reply\n" if SSERedis::is_error($reply);
    return _entries($reply);
}

# the entries of one channel (or of a list of channels) of the log
sub log_of {
    my ($self, $key, @channels) = @_;
    my %ch = map { $_ => 1 } @channels;
    return grep { $ch{ $_->{fields}{channel} // '' } } $self->xrange_all($key);
}

sub xlen {
    my ($self, $key) = @_;
    return $self->call('XLEN', $key // 'sse:log');
}

# XADD <key> * f v ...: the new id
sub xadd {
    my ($self, $key, @fv) = @_;
    return $self->call('XADD', $key, '*', @fv);
}

sub stop {
    my ($self, %o) = @_;
    return 1 unless $self->alive;
    my $pid = $self->{pid};
    delete $self->{admin};
    my $c = eval { $self->client(timeout => 2) };
    if ($c) {
        $c->send('SHUTDOWN', $o{save} ? 'SAVE' : 'NOSAVE');
        eval { $c->poll_reply(3) };          # the connection just closes
    }
    my $gone = SSETest::wait_until(sub { !$self->alive }, 10, 0.02);
    unless ($gone) {
        CORE::kill 'TERM', $pid;
        $gone = SSETest::wait_until(sub { !$self->alive }, 5, 0.02);
        unless ($gone) { CORE::kill 'KILL', $pid; SSETest::wait_until(sub { !$self->alive }, 5, 0.02) }
        $gone = 0;
    }
    return $gone;
}

sub kill {
    my ($self) = @_;
    return 1 unless $self->alive;
    delete $self->{admin};
    CORE::kill 'KILL', $self->{pid};
    return SSETest::wait_until(sub { !$self->alive }, 5, 0.01);
}

# the data files removed (a Redis that comes back empty); only when stopped
sub wipe {
    my ($self) = @_;
    die "wipe: redis-server is running\n" if $self->alive;
    system('rm', '-rf', "$self->{dir}/appendonlydir", "$self->{dir}/dump.rdb");
}

sub _reap_hard {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    CORE::kill 'KILL', $pid;
    waitpid($pid, 0);
    delete $LIVE{$pid};
    $self->{pid} = undef;
}

sub is_error { return ref $_[0] && ref $_[0] eq 'SSERedis::Error' }

# ----------------------------------------------------------------------
# helpers for nginx nodes on Redis

our $WARMUP = '_warmup';
sub warmup_channel { $WARMUP }

# start_node(redis => $r | url => $url, name => 'A', http => '...', workers => 2,
#            ready => 1, url_opts => {...}, ...start_nginx options)
# An nginx with sse_redis; with ready (the default) it waits until the
# node's link is up, a POST is accepted by every worker and the node has
# read its own entries back (node_ready), and with a name it reports that
# as a test.
sub start_node {
    my (%o) = @_;
    my $r = delete $o{redis};
    my $url = delete $o{url} // $r->url(%{ delete $o{url_opts} || {} });
    my $name = delete $o{name};
    my $ready = exists $o{ready} ? delete $o{ready} : 1;
    my $timeout = delete $o{ready_timeout} // 15;
    my $http = "    sse_redis $url;\n" . (delete $o{http} // '');
    my $srv = SSETest::start_nginx(workers => 2, %o, http => $http);
    $srv->{node_name} = $name // "node on $srv->{port}";
    if ($ready) {
        my $ok = node_ready($srv, $timeout);
        $srv->{redis_ready} = $ok;
        if (defined $name) {
            local $Test::Builder::Level = $Test::Builder::Level + 1;
            Test::More::ok($ok, "node $name: Redis link up, every worker's POST answered 201,"
                . " the node delivers from the log")
                or Test::More::diag("node $name status: "
                    . SSETest::json_encode(SSETest::status($srv)) . "\nerror.log:\n"
                    . substr($srv->error_log, -3000));
        }
    }
    return $srv;
}

sub redis_state {
    my ($srv) = @_;
    my $j = SSETest::status($srv);
    return ref $j eq 'HASH' ? ($j->{redis} // '(no redis key)') : '(no status)';
}

sub wait_redis {
    my ($srv, $state, $timeout) = @_;
    return SSETest::wait_until(sub { redis_state($srv) eq $state }, $timeout // 10, 0.05);
}

# node_ready($srv, $timeout, pub => '/pub/'): the node's link is up, every
# worker has answered a warm-up POST with 201 (on the channel _warmup, at
# <pub>_warmup), and the node serves its last warm-up id back from its zone
# (it reads the log).  Workers are told apart by the X-Worker header that
# SSETest's configs add.
sub node_ready {
    my ($srv, $timeout, %o) = @_;
    my $pub = $o{pub} // '/pub/';
    my $deadline = time() + ($timeout // 15);
    return 0 unless wait_redis($srv, 'up', $timeout // 15);
    my %need = map { $_ => 1 } $srv->worker_pids;
    my %ok;
    my $last;
    while (time() < $deadline) {
        for my $res ($srv->http_parallel(4, 'POST', "$pub$WARMUP",
                         headers => { 'Content-Type' => 'text/plain' }, body => 'warm-up')) {
            next unless $res->{status} == 201 && ref $res->{json} eq 'HASH';
            # without an X-Worker header (a config not made by SSETest)
            # the workers cannot be told apart: one 201 is all we know
            if (defined $res->{worker}) { $ok{ $res->{worker} } = 1 } else { %ok = map { $_ => 1 } keys %need }
            $last = $res->{json}{id}
                if defined $res->{json}{id}
                && (!defined $last || SSETest::id_cmp($res->{json}{id}, $last) > 0);
        }
        last unless grep { !$ok{$_} } keys %need;
        sleep 0.1;
    }
    return 0 if grep { !$ok{$_} } keys %need;
    return SSETest::wait_until(sub {
        my $g = $srv->http('GET', "$pub$WARMUP");
        return $g->{status} == 200 && ref $g->{json} eq 'HASH'
            && ($g->{json}{id} // '') eq $last;
    }, $deadline - time() > 1 ? $deadline - time() : 1, 0.05) ? 1 : 0;
}

# the nodes whose status says "redis_ingress":true
sub ingress_nodes {
    return grep {
        my $j = SSETest::status($_);
        ref $j eq 'HASH' && $j->{redis_ingress} && "$j->{redis_ingress}" eq 'true';
    } @_;
}

# SIGKILL for the master and every worker at once (a machine that dies)
sub kill_node {
    my ($srv) = @_;
    my @pids = ($srv->pid, $srv->child_pids);
    CORE::kill 'KILL', @pids;
    return SSETest::wait_until(sub { !grep { SSETest::Server::_alive($_) } @pids }, 10, 0.02);
}

# GET /status?format=prometheus: { values => {name => v}, help => {name => 1}, type => {name => t}, text }
sub prometheus {
    my ($srv, $path) = @_;
    my $r = $srv->http('GET', ($path // '/status') . '?format=prometheus');
    my %p = (status => $r->{status}, text => $r->{body} // '', values => {}, help => {}, type => {},
             content_type => $r->{headers}{'content-type'});
    for my $l (split /\n/, $p{text}) {
        if ($l =~ /^# HELP (\S+)/) { $p{help}{$1} = 1 }
        elsif ($l =~ /^# TYPE (\S+) (\S+)/) { $p{type}{$1} = $2 }
        elsif ($l =~ /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? (\S+)/) { $p{values}{$1} = $2 }
    }
    return \%p;
}

# ----------------------------------------------------------------------
# comparing events: {id, event, data} as read_events gives them

sub ev_sig {
    my ($e) = @_;
    my $d = $e->{data} // '(no data)';
    $d =~ s/\n/\\n/g;
    return join '|', $e->{id} // '(no id)', $e->{event} // 'message', $d;
}

# the first difference of two lists of events, for a failure message
sub first_diff {
    my ($got, $want) = @_;
    my $n = @$got > @$want ? @$got : @$want;
    for my $i (0 .. $n - 1) {
        my $g = $i < @$got ? ev_sig($got->[$i]) : '(nothing)';
        my $w = $i < @$want ? ev_sig($want->[$i]) : '(nothing)';
        return "first difference at #$i: got [$g], expected [$w] (got " . @$got
            . ' events, expected ' . @$want . ')' if $g ne $w;
    }
    return 'the same events';
}

# same_events(\@got, \@want, $name): one test, the first difference shown
sub same_events {
    my ($got, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    my $ok = join("\0", map { ev_sig($_) } @$got) eq join("\0", map { ev_sig($_) } @$want);
    Test::More::ok($ok, $name) or Test::More::diag(first_diff($got, $want));
    return $ok;
}

# log entries (xrange_all) as the events a subscriber should see
sub entries_as_events {
    return map { { id => $_->{id}, event => $_->{fields}{event} // 'message',
                   data => $_->{fields}{data}, channel => $_->{fields}{channel} } } @_;
}

# the lines of an error.log text at these levels (e.g. qw(error crit alert emerg))
sub log_lines {
    my ($text, @levels) = @_;
    my $re = join '|', @levels;
    return grep { /\[(?:$re)\]/ } split /\n/, $text // '';
}

# ----------------------------------------------------------------------
package SSERedis::Error;

use overload '""' => sub { $_[0]{message} }, 'eq' => sub { "$_[0]" eq "$_[1]" },
             'bool' => sub { 1 }, fallback => 1;
sub new { my ($c, $m) = @_; return bless { message => $m }, $c }
sub message { $_[0]{message} }

# ----------------------------------------------------------------------
package SSERedis::Client;

# A small RESP2 client.  cmd(@args) sends one command and returns the
# decoded reply: simple strings and bulk strings as strings (nil: undef),
# integers as numbers, arrays as array refs, error replies as
# SSERedis::Error objects.  A closed connection, a timeout or a protocol
# error dies.  send + read_reply / poll_reply for SUBSCRIBE and friends.

use strict;
use warnings;
use IO::Select;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time);

sub new {
    my ($class, %o) = @_;
    my $self = bless {
        host => $o{host} // '127.0.0.1', port => $o{port}, timeout => $o{timeout} // 5,
        buf => '', eof => 0,
    }, $class;
    my $s = IO::Socket::INET->new(PeerAddr => $self->{host}, PeerPort => $self->{port},
                                  Proto => 'tcp', Timeout => $self->{timeout})
        or die "redis: connect to $self->{host}:$self->{port}: $!\n";
    binmode $s;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    $self->{sock} = $s;
    $self->{sel} = IO::Select->new($s);
    if (defined $o{password}) {
        my $r = $self->cmd('AUTH', (defined $o{user} ? ($o{user}) : ()), $o{password});
        die "redis: AUTH: $r\n" if SSERedis::is_error($r);
    }
    if ($o{db}) {
        my $r = $self->cmd('SELECT', $o{db});
        die "redis: SELECT $o{db}: $r\n" if SSERedis::is_error($r);
    }
    return $self;
}

sub encode {
    my (@args) = @_;
    my $out = '*' . scalar(@args) . "\r\n";
    for my $a (@args) {
        my $b = $a // '';
        utf8::encode($b) if utf8::is_utf8($b);
        $out .= '$' . length($b) . "\r\n$b\r\n";
    }
    return $out;
}

sub send {
    my ($self, @args) = @_;
    my $data = encode(@args);
    SSETest::_write_all($self->{sock}, $data, $self->{timeout})
        or die "redis: write to port $self->{port} failed: $!\n";
    return 1;
}

sub cmd {
    my ($self, @args) = @_;
    $self->send(@args);
    return $self->read_reply;
}

# parse one reply at $pos of $$buf: () when incomplete, (value, next pos)
sub parse {
    my ($buf, $pos) = @_;
    $pos //= 0;
    return () if $pos >= length $$buf;
    my $nl = index($$buf, "\r\n", $pos);
    my $type = substr($$buf, $pos, 1);
    die sprintf("redis protocol error: reply type byte 0x%02x\n", ord $type)
        unless $type =~ /^[-+:\$*]$/;
    return () if $nl < 0;
    my $line = substr($$buf, $pos + 1, $nl - $pos - 1);
    my $next = $nl + 2;
    return ($line, $next) if $type eq '+';
    return (SSERedis::Error->new($line), $next) if $type eq '-';
    die "redis protocol error: bad number '$line'\n" unless $line =~ /\A-?\d+\z/;
    return ($line + 0, $next) if $type eq ':';
    if ($type eq '$') {
        return (undef, $next) if $line < 0;
        return () if length($$buf) < $next + $line + 2;
        die "redis protocol error: bulk string not followed by CRLF\n"
            unless substr($$buf, $next + $line, 2) eq "\r\n";
        return (substr($$buf, $next, $line), $next + $line + 2);
    }
    return (undef, $next) if $line < 0;
    my @a;
    my $p = $next;
    for (1 .. $line) {
        my @r = parse($buf, $p);
        return () unless @r;
        push @a, $r[0];
        $p = $r[1];
    }
    return (\@a, $p);
}

# one reply; dies on timeout, EOF, protocol error
sub read_reply {
    my ($self, $timeout) = @_;
    my @r = $self->poll_reply($timeout // $self->{timeout});
    die "redis: no reply within " . ($timeout // $self->{timeout}) . "s (port $self->{port})\n"
        unless @r;
    return $r[0];
}

# one reply, or () when none came within $timeout; dies on EOF
sub poll_reply {
    my ($self, $timeout) = @_;
    my $deadline = time() + ($timeout // 0);
    while (1) {
        my @r = parse(\$self->{buf}, 0);
        if (@r) {
            substr($self->{buf}, 0, $r[1], '');
            return ($r[0]);
        }
        if ($self->{eof}) {
            $self->{partial} = $self->{buf};
            die "redis: connection closed by port $self->{port}"
                . (length $self->{buf} ? ' in the middle of a reply' : '') . "\n";
        }
        my $left = $deadline - time();
        return () if $left <= 0 && !$self->{sel}->can_read(0);
        next unless $self->{sel}->can_read($left > 0 ? $left : 0);
        my $n = sysread($self->{sock}, my $chunk, 262144);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            $self->{eof} = 1;
            next;
        }
        if ($n == 0) { $self->{eof} = 1; next }
        $self->{buf} .= $chunk;
    }
}

# the peer closed the connection (nothing is expected to be pending)
sub dead {
    my ($self) = @_;
    return 1 if $self->{eof} || !$self->{sock};
    return 0 unless $self->{sel}->can_read(0);
    my $n = sysread($self->{sock}, my $chunk, 65536);
    if (!$n) { $self->{eof} = 1; return 1 }
    $self->{buf} .= $chunk;
    return 0;
}

sub close {
    my ($self) = @_;
    CORE::close($self->{sock}) if $self->{sock};
    delete $self->{sock};
    $self->{eof} = 1;
}

sub DESTROY { my $s = shift; CORE::close($s->{sock}) if $s->{sock} }

# ----------------------------------------------------------------------
package SSERedis::Fake;

# A fake Redis in a forked Perl process on a free port, one mode:
#   garbage          answers random bytes (never a valid RESP reply) to anything
#   silent           accepts, reads, never answers
#   close_mid_reply  answers the first command with half a reply, then closes
#   loading          answers "-LOADING ..." to every command for loading_for
#                    seconds from its start, then relays bytes to the real
#                    redis on backend_port (connections made earlier too)
#   proxy            relays bytes to backend_port; cut() closes every
#                    connection and the listening socket (connect refused),
#                    hang() keeps every connection open but lets nothing
#                    through either way, old or new (a black hole);
#                    restore() listens again / relays new connections (the
#                    hung ones stay hung: what they sent is lost); with
#                    hold_time => $secs, the first TIME command the fake
#                    sees (or the first hold_cmd => NAME), and all its
#                    connection sends after it, are held back that long,
#                    then relayed (logged "hold" and "release"), or as soon
#                    as the client closes (a slow network delivers what was
#                    sent before a FIN; logged "release on close"); with
#                    time_reply => $resp, the first TIME the fake sees, sent
#                    alone, is answered $resp by the fake (logged "answered
#                    TIME"), not relayed
# The fake logs "accept" and "cmd <NAME>" lines (commands() / accepts()).

use strict;
use warnings;
use IO::Socket::INET;
use IO::Select;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use File::Temp qw(tempdir);

my %MODES = map { $_ => 1 } qw(garbage silent close_mid_reply loading proxy);

sub start {
    my ($class, %o) = @_;
    die "fake redis: unknown mode '" . ($o{mode} // '') . "'\n" unless $MODES{ $o{mode} // '' };
    die "fake redis: mode $o{mode} needs backend_port\n"
        if ($o{mode} eq 'loading' || $o{mode} eq 'proxy') && !$o{backend_port};
    my $dir = tempdir('sse-fake-XXXXXX', TMPDIR => 1, CLEANUP => !$ENV{KEEP});
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $o{port} // 0,
                                  Proto => 'tcp', Listen => 128, ReuseAddr => 1)
        or die "fake redis: listen: $!\n";
    my $port = $l->sockport;
    my $t0 = time();
    my $self = bless { %o, dir => $dir, port => $port, t0 => $t0, owner => $$, state_seq => 0 }, $class;
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        $SIG{$_} = 'DEFAULT' for qw(TERM INT);
        SSERedis::close_inherited_fds(fileno $l);
        # nor the test's stdout (a pipe to prove, or to a qx{} that would wait for it)
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>>', "$dir/log";
        my $ok = eval { $self->_serve($l); 1 };
        if (!$ok && open my $fh, '>>', "$dir/log") { print $fh "died $@" }
        POSIX::_exit(0);
    }
    close $l;
    $self->{pid} = $pid;
    $SSERedis::LIVE{$pid} = $self;
    return $self;
}

sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub url  { "redis://127.0.0.1:$_[0]{port}" }
sub log_text { SSETest::_slurp("$_[0]{dir}/log") // '' }
sub accepts  { scalar(() = $_[0]->log_text =~ /^accept\b/mg) }
sub commands { return $_[0]->log_text =~ /^cmd (\S+)/mg }
sub replies  { scalar(() = $_[0]->log_text =~ /^reply\b/mg) }
sub loading_left { my $s = shift; my $l = $s->{t0} + ($s->{loading_for} // 0) - time(); $l > 0 ? $l : 0 }

sub _state_seq {
    my ($self) = @_;
    my $t = SSETest::_slurp("$self->{dir}/state") // '';
    return $t =~ /^(\d+) (\S+)/ ? ($1, $2) : (0, '');
}

sub _signal_and_wait {
    my ($self, $sig, $want) = @_;
    my ($seq) = $self->_state_seq;
    CORE::kill $sig, $self->{pid} or return 0;
    return SSETest::wait_until(sub {
        my ($s, $st) = $self->_state_seq;
        $s > $seq && $st eq $want;
    }, 10, 0.01);
}

sub cut     { $_[0]->_signal_and_wait('USR1', 'cut') }
sub hang    { $_[0]->_signal_and_wait('WINCH', 'hang') }
sub restore { $_[0]->_signal_and_wait('USR2', 'running') }

sub alive {
    my ($self) = @_;
    my $pid = $self->{pid} or return 0;
    return 1 if waitpid($pid, WNOHANG) == 0;
    delete $SSERedis::LIVE{$pid};
    $self->{pid} = undef;
    return 0;
}

sub stop {
    my ($self) = @_;
    return 1 unless $self->alive;
    CORE::kill 'TERM', $self->{pid};
    SSETest::wait_until(sub { !$self->alive }, 5, 0.01) and return 1;
    $self->_reap_hard;
    return 1;
}

sub _reap_hard {
    my ($self) = @_;
    my $pid = $self->{pid} or return;
    CORE::kill 'KILL', $pid;
    waitpid($pid, 0);
    delete $SSERedis::LIVE{$pid};
    $self->{pid} = undef;
}

# --- the child

# one command out of a RESP request buffer: (name) and the buffer
# shortened, or () when incomplete
sub _take_cmd {
    my ($buf) = @_;
    return () unless length $$buf;
    if (substr($$buf, 0, 1) ne '*') {               # inline command
        my $nl = index($$buf, "\n");
        return () if $nl < 0;
        my $line = substr($$buf, 0, $nl + 1, '');
        $line =~ s/\r?\n\z//;
        my ($name) = split ' ', $line;
        return (uc($name // ''));
    }
    my @r = eval { SSERedis::Client::parse($buf, 0) };
    if ($@) { $$buf = ''; return ('(bad request)') }
    return () unless @r;
    substr($$buf, 0, $r[1], '');
    my $a = $r[0];
    return (ref $a eq 'ARRAY' && defined $a->[0] ? uc $a->[0] : '(empty)');
}

sub _garbage {
    my @first = ('A' .. 'Z', 'a' .. 'z', '0' .. '9', '@', '!', '?');
    my $g = $first[int rand @first];
    $g .= chr(int rand 256) for 1 .. (8 + int rand 120);
    return $g;
}

sub _serve {
    my ($self, $listener) = @_;
    my $mode = $self->{mode};
    my $dir = $self->{dir};
    open my $log, '>>', "$dir/log" or die "log: $!";
    $log->autoflush(1);
    my $seq = 0;
    my $state = sub {
        my ($st) = @_;
        $seq++;
        open my $fh, '>', "$dir/state.tmp" or return;
        print $fh "$seq $st\n";
        close $fh;
        rename "$dir/state.tmp", "$dir/state";
    };
    my ($want_cut, $want_restore, $want_hang, $hanging) = (0, 0, 0, 0);
    $SIG{USR1} = sub { $want_cut = 1 };
    $SIG{WINCH} = sub { $want_hang = 1 };
    $SIG{USR2} = sub { $want_restore = 1 };
    $SIG{PIPE} = 'IGNORE';
    my $loading_until = $self->{t0} + ($self->{loading_for} // 0);
    my %c;              # fileno => { sock, kind => client|backend, peer => fileno, buf, shadow }

    my $close = sub {
        my ($fn) = @_;
        my $e = delete $c{$fn} or return;
        CORE::close($e->{sock});
        if (defined $e->{peer} && $c{ $e->{peer} }) {
            my $p = delete $c{ $e->{peer} };
            CORE::close($p->{sock});
        }
    };
    my $write = sub {
        my ($e, $data) = @_;
        my $off = 0;
        while ($off < length $data) {
            my $n = syswrite($e->{sock}, $data, length($data) - $off, $off);
            if (!defined $n) { next if $!{EINTR} || $!{EAGAIN}; return 0 }
            $off += $n;
        }
        return 1;
    };
    my $relay = sub {               # client bytes to its backend, connected on first use
        my ($e) = @_;
        unless (defined $e->{peer}) {
            my $b = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{backend_port},
                                          Proto => 'tcp', Timeout => 5);
            unless ($b) { print $log "backend connect failed: $!\n"; $close->(fileno $e->{sock}); return }
            binmode $b;
            $c{ fileno $b } = { sock => $b, kind => 'backend', peer => fileno $e->{sock} };
            $e->{peer} = fileno $b;
        }
        my $data = $e->{buf};
        $e->{buf} = '';
        $write->($c{ $e->{peer} }, $data) or $close->(fileno $e->{sock});
    };

    $state->('running');
    while (1) {
        if ($want_cut) {
            $want_cut = 0;
            $close->($_) for grep { $c{$_} && $c{$_}{kind} eq 'client' } keys %c;
            CORE::close($listener) if $listener;
            undef $listener;
            print $log "cut\n";
            $state->('cut');
        }
        if ($want_hang) {
            $want_hang = 0;
            $hanging = 1;
            $_->{hung} = 1 for values %c;
            print $log "hang\n";
            $state->('hang');
        }
        if ($want_restore) {
            $want_restore = 0;
            $hanging = 0;
            my $deadline = time() + 10;
            until ($listener || time() > $deadline) {
                $listener = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $self->{port},
                                                  Proto => 'tcp', Listen => 128, ReuseAddr => 1)
                    or sleep 0.05;
            }
            print $log "restore" . ($listener ? '' : ' failed') . "\n";
            $state->($listener ? 'running' : 'restore-failed');
        }
        my $sel = IO::Select->new(($listener ? ($listener) : ()), map { $_->{sock} } values %c);
        my @ready = $sel->can_read(0.1);
        for my $s (@ready) {
            if ($listener && $s == $listener) {
                my $a = $listener->accept or next;
                binmode $a;
                $c{ fileno $a } = { sock => $a, kind => 'client', buf => '', shadow => '', hung => $hanging };
                print $log "accept\n";
                next;
            }
            my $fn = fileno $s;
            my $e = defined $fn ? $c{$fn} : undef;
            next unless $e;
            my $n = sysread($s, my $data, 262144);
            if (!defined $n) { next if $!{EINTR} || $!{EAGAIN}; $close->($fn); next }
            if ($n == 0) {
                if ($e->{held} && length($e->{buf} // '')) {
                    print $log "release on close\n";
                    $relay->($e);
                }
                $close->($fn);
                next;
            }
            if ($e->{hung}) { print $log "swallowed\n"; next }
            if ($e->{kind} eq 'backend') {
                my $p = $c{ $e->{peer} };
                $write->($p, $data) or $close->($fn) if $p;
                next;
            }
            # client bytes: log the commands they hold
            $e->{shadow} .= $data;
            my @cmds;
            while (my ($name) = _take_cmd(\$e->{shadow})) { push @cmds, $name }
            print $log "cmd $_\n" for @cmds;
            if ($mode eq 'garbage') {
                print $log "reply garbage\n";
                $write->($e, _garbage()) or $close->($fn);
            } elsif ($mode eq 'silent') {
                # nothing
            } elsif ($mode eq 'close_mid_reply') {
                print $log "reply half\n";
                $write->($e, "*2\r\n\$7\r\nmessage\r\n\$11\r\nhello");
                $close->($fn);
            } elsif ($mode eq 'loading' && time() < $loading_until && !defined $e->{peer}) {
                $e->{buf} .= $data;
                while (length $e->{buf}) {
                    my ($name) = _take_cmd(\$e->{buf});
                    last unless defined $name;
                    print $log "reply loading $name\n";
                    $write->($e, "-LOADING Redis is loading the dataset in memory\r\n")
                        or do { $close->($fn); last };
                }
            } elsif ($self->{time_reply} && !$self->{time_answered} && @cmds == 1
                     && $cmds[0] eq 'TIME' && !length($e->{buf} // '') && !length $e->{shadow}) {
                $self->{time_answered} = 1;
                print $log "answered TIME\n";
                $write->($e, $self->{time_reply}) or $close->($fn);
            } else {                    # proxy, or loading done
                $e->{buf} .= $data;
                if ($self->{hold_time} && !$self->{held}
                    && grep { $_ eq ($self->{hold_cmd} // 'TIME') } @cmds) {
                    $self->{held} = 1;
                    $e->{held} = time() + $self->{hold_time};
                    print $log "hold\n";
                }
                $relay->($e) unless $e->{held} && $e->{held} > time();
            }
        }
        for my $e (grep { $_->{held} && $_->{held} <= time() && length($_->{buf} // '') } values %c) {
            print $log "release\n";
            $relay->($e);
        }
    }
}

# ----------------------------------------------------------------------
package SSERedis::Sub;

# A subscriber that behaves as a browser's EventSource: when its stream
# ends it reconnects at once to the same node and path with the last id it
# saw as Last-Event-ID, and keeps every event it got, in order.

use strict;
use warnings;
use Time::HiRes qw(time sleep);

sub new {
    my ($class, $srv, $path, %o) = @_;
    my $self = bless { srv => $srv, path => $path, events => [], reconnects => 0,
                       last_id => $o{last_event_id}, workers => {}, opens => 0 }, $class;
    $self->_open;
    return $self;
}

sub _open {
    my ($self) = @_;
    my %h;
    $h{'Last-Event-ID'} = $self->{last_id} if defined $self->{last_id};
    my $s = $self->{srv}->sse_connect($self->{path}, headers => \%h);
    $self->{s} = $s;
    $self->{opens}++;
    $self->{workers}{ $s->worker // '?' }++ if $s->status == 200;
    return $s->status == 200;
}

sub stream  { $_[0]{s} }
sub worker  { $_[0]{s}->worker }
sub events  { @{ $_[0]{events} } }
sub ids     { map { $_->{id} // '(no id)' } @{ $_[0]{events} } }
sub count   { scalar @{ $_[0]{events} } }
sub reconnects { $_[0]{reconnects} }

sub _take {
    my ($self, @ev) = @_;
    for (@ev) {
        push @{ $self->{events} }, $_;
        $self->{last_id} = $_->{id} if defined $_->{id};
    }
}

# read what arrives within $timeout; reconnect when the stream has ended
sub pump {
    my ($self, $timeout) = @_;
    my $s = $self->{s};
    my $n = 0;
    if ($s->status == 200) {
        my @ev = $s->read_events(timeout => $timeout // 0);
        $self->_take(@ev);
        $n += @ev;
    } else {
        sleep($timeout // 0);
    }
    if ($s->status != 200 || $s->is_closed(0)) {
        my @ev = $s->status == 200 ? $s->read_events(timeout => 0) : ();
        $self->_take(@ev);
        $n += @ev;
        $s->close;
        $self->{reconnects}++;
        $self->_open;
    }
    return $n;
}

# pump until $n events in all, or $timeout
sub pump_until {
    my ($self, $n, $timeout) = @_;
    my $deadline = time() + ($timeout // 10);
    while ($self->count < $n && time() < $deadline) {
        my $s = $self->{s};
        if ($s->status == 200 && !$s->is_closed(0)) {
            my @ev = $s->read_events(count => $n - $self->count, timeout => 0.2);
            $self->_take(@ev);
        }
        $self->pump(0);
    }
    return $self->count >= $n;
}

sub close { $_[0]{s}->close if $_[0]{s} }

1;

package Browser;

# A real browser for the tests: Debian's /usr/bin/chromium, headless, driven
# by playwright-core through t/browser/lib/driver.mjs.  Perl core only.
#
#   my $b = Browser->start(args => ['--ignore-certificate-errors']);
#   $b->goto("http://127.0.0.1:$port/");
#   my $n = $b->wait('document.querySelectorAll("tr").length >= 2 && 1', 20);
#   my $v = $b->eval('window.location.href');
#   $b->screenshot("$dir/page.png");
#   $b->quit;
#
# Every call returns the answer's value, or undef when the command failed
# or timed out ($b->error says why; wait() returning undef means "did not
# become true in time").  Chromium is heavy on a small machine: one browser
# at a time, timeouts in tens of seconds.  Browser::problems() lists what is
# missing to run one.

use strict;
use warnings;
use IPC::Open2 qw(open2);
use IO::Select;
use IO::Handle;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);
use File::Basename qw(dirname);
use File::Temp ();
use Cwd qw(abs_path);
use SSETest qw(json_encode json_decode);

my $DIR = dirname(abs_path(__FILE__));
our $CHROMIUM = $ENV{CHROMIUM_BIN} || '/usr/bin/chromium';
our $NODE = $ENV{NODE_BIN} || 'node';

# what stops a browser test from running: a list of sentences
sub problems {
    my @p;
    push @p, "node is not installed ($NODE): make deps"
        unless system("$NODE --version >/dev/null 2>&1") == 0;
    push @p, "$CHROMIUM is missing: make deps (package chromium)" unless -x $CHROMIUM;
    push @p, 'playwright-core is not in t/node_modules: make deps (npm install --prefix t)'
        unless -f "$DIR/../../node_modules/playwright-core/package.json";
    return @p;
}

sub start {
    my ($class, %o) = @_;
    my $logdir = File::Temp::tempdir('sse-browser-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $stderr = "$logdir/driver.stderr";
    open my $saved, '>&', \*STDERR or die "dup stderr: $!";
    open STDERR, '>', $stderr or die "open $stderr: $!";
    my ($from, $to);
    my $pid = eval {
        open2($from, $to, $NODE, "$DIR/driver.mjs",
              json_encode({ args => $o{args} || [], executablePath => $CHROMIUM,
                            ($o{viewport} ? (viewport => $o{viewport}) : ()) }));
    };
    my $err = $@;
    open STDERR, '>&', $saved or die "restore stderr: $!";
    die "cannot start node: $err" unless $pid;
    $to->autoflush(1);
    my $self = bless {
        pid => $pid, from => $from, to => $to, sel => IO::Select->new($from),
        buf => '', id => 0, log => [], stderr => $stderr, owner => $$,
        logdir => $logdir,
    }, $class;
    my $ready = $self->_read_until(sub { ($_[0]{event} // '') =~ /^(ready|launch-failed)$/ },
                                   $o{timeout} // 120);
    unless ($ready && $ready->{event} eq 'ready') {
        my $why = $ready ? $ready->{error} : 'no answer from the driver';
        $self->quit;
        die "Chromium did not start: $why\n" . $self->stderr_text;
    }
    $self->{version} = $ready->{version};
    return $self;
}

sub version { $_[0]{version} }
sub error   { $_[0]{error} }

# the page's console lines, page errors and failed requests so far
sub log_lines {
    my ($self) = @_;
    return map {
        $_->{event} eq 'console' ? "console.$_->{type}: $_->{text}"
      : $_->{event} eq 'requestfailed' ? "request failed: $_->{url} ($_->{error})"
      : "$_->{event}: " . ($_->{text} // json_encode($_))
    } @{ $self->{log} };
}

sub stderr_text {
    my ($self) = @_;
    open my $fh, '<', $self->{stderr} or return '';
    local $/;
    my $t = <$fh> // '';
    return $t;
}

# read lines until $pred matches one (returned) or $timeout seconds pass
sub _read_until {
    my ($self, $pred, $timeout) = @_;
    my $deadline = time() + $timeout;
    while (1) {
        while ($self->{buf} =~ s/\A([^\n]*)\n//) {
            my $line = $1;
            my $j = eval { json_decode($line) };
            unless (ref $j eq 'HASH') {
                push @{ $self->{log} }, { event => 'garbage', text => $line };
                next;
            }
            return $j if $pred->($j);
            push @{ $self->{log} }, $j if defined $j->{event};
        }
        my $left = $deadline - time();
        return undef if $left <= 0 || $self->{eof};
        next unless $self->{sel}->can_read($left);
        my $n = sysread($self->{from}, $self->{buf}, 65536, length $self->{buf});
        $self->{eof} = 1 unless $n;
    }
}

sub call {
    my ($self, $cmd, %a) = @_;
    my $timeout = $a{timeout} // 60;
    delete $self->{error};
    if ($self->{eof} || !$self->{to}) {
        $self->{error} = 'the browser is gone';
        return undef;
    }
    my $id = ++$self->{id};
    my %msg = (%a, id => $id, cmd => $cmd);
    $msg{timeout} = int($timeout * 1000) if exists $a{timeout};
    print { $self->{to} } json_encode(\%msg), "\n";
    my $r = $self->_read_until(sub { defined $_[0]{id} && $_[0]{id} == $id }, $timeout + 30);
    unless ($r) {
        $self->{error} = "no answer to $cmd within " . ($timeout + 30) . 's';
        return undef;
    }
    unless ($r->{ok}) {
        $self->{error} = $r->{error};
        return undef;
    }
    return $r->{value};
}

sub goto       { my ($s, $url, %o) = @_; $s->call('goto', url => $url, %o) }
sub eval       { my ($s, $js) = @_; $s->call('eval', js => $js) }
sub wait       { my ($s, $js, $t) = @_; $s->call('wait', js => $js, timeout => $t // 30) }
sub fill       { my ($s, $sel, $v) = @_; $s->call('fill', selector => $sel, value => $v) }
sub click      { my ($s, $sel) = @_; $s->call('click', selector => $sel) }
sub press      { my ($s, $sel, $k) = @_; $s->call('press', selector => $sel, key => $k) }
sub screenshot { my ($s, $path, %o) = @_; $s->call('screenshot', path => $path, %o) }
sub responses  { my ($s) = @_; my $r = $s->call('responses'); $r ? @$r : () }
sub clear_cookies { $_[0]->call('clear_cookies') }

# shows the page's log and the driver's stderr (for a failed test)
sub diag_log {
    my ($self) = @_;
    my @l = $self->log_lines;
    Test::More::diag("page log:\n" . join("\n", map { "  $_" } @l)) if @l;
    my $e = $self->stderr_text;
    Test::More::diag("driver stderr:\n$e") if length $e;
}

sub quit {
    my ($self) = @_;
    return if $self->{quit}++ || $self->{owner} != $$;
    if ($self->{to}) {
        print { $self->{to} } json_encode({ id => ++$self->{id}, cmd => 'quit' }), "\n"
            unless $self->{eof};
        close $self->{to};
        delete $self->{to};
    }
    my $gone = SSETest::wait_until(sub { waitpid($self->{pid}, WNOHANG) == $self->{pid} }, 30, 0.1);
    unless ($gone) {
        kill 'TERM', $self->{pid};
        SSETest::wait_until(sub { waitpid($self->{pid}, WNOHANG) == $self->{pid} }, 10, 0.1)
            or do { kill 'KILL', $self->{pid}; waitpid($self->{pid}, 0) };
    }
    return $gone;
}

sub DESTROY { local ($@, $!, $?); $_[0]->quit }

1;

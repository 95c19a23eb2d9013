#!/usr/bin/perl
# make run from a clone in a private folder (mode 700, as /root or a home
# on Debian), as root and as an ordinary user (nobody): the demo page
# answers 200, a publish whose body nginx keeps in a temp file answers 201,
# a stream gets it, the workers do not run as root, and make stop ends nginx
# and removes the folder make run made outside the clone.  (Run as root,
# nginx's workers are "nobody": they could not read a page or write a temp
# file inside a private clone; mk/run.mk says what it does instead.)
#
# The copy of the tree is run with make -o deps -o build: the module built
# for the other tests is copied in, nothing is installed or rebuilt.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use File::Temp qw(tempdir);
use File::Copy qw(copy);
use POSIX qw(WNOHANG);

ok($> == 0, 'the test runs as root (make test runs as root)')
    or BAIL_OUT('t/85-make-run.t needs root: it runs make run as root and as nobody');
ok(system('setpriv --version >/dev/null 2>&1') == 0, 'setpriv is installed (util-linux)')
    or BAIL_OUT('setpriv is missing');

my $repo = repo_dir();
my $so = $ENV{SSE_MODULE} || "$repo/build/modules/ngx_http_sse_module.so";
ok(-f $so, "the module is built ($so)") or BAIL_OUT('build the module first (make)');
my ($nobody_uid, $nobody_gid) = (getpwnam('nobody'))[2, 3];
ok(defined $nobody_uid, 'user nobody exists') or BAIL_OUT('no user nobody');

# a command's output and exit status, as root or as nobody, in $dir
sub run_in {
    my ($dir, $as_nobody, @cmd) = @_;
    my @pre = $as_nobody
        ? ('setpriv', "--reuid=$nobody_uid", "--regid=$nobody_gid", '--clear-groups',
           'env', "HOME=$dir")
        : ();
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        chdir $dir or die "chdir $dir: $!";
        # a make test run's own flags (jobserver, -j) are not the clone's
        delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL MAKEOVERRIDES)};
        exec @pre, @cmd or exit 127;
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    return ($? >> 8, $out);
}

sub uid_of {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (<$fh>) { return $1 if /^Uid:\s+(\d+)/ }
    return undef;
}

sub try_make_run {
    my ($who, $as_nobody) = @_;
    my $private = tempdir('sse-make-run-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    chown $nobody_uid, $nobody_gid, $private if $as_nobody;
    chmod 0700, $private;
    my $clone = "$private/ngx-sse";
    # the tree as a clone has it (without what the build and npm made)
    my ($rc, $out) = run_in($private, $as_nobody, 'mkdir', $clone);
    is($rc, 0, "$who: mkdir the clone") or diag($out);
    ($rc, $out) = run_in($private, 0, 'sh', '-c',
        "tar -C '$repo' --exclude=./build --exclude=./t/node_modules --exclude=./.git"
        . " --exclude=./bench/node_modules -cf - . | "
        . ($as_nobody ? "setpriv --reuid=$nobody_uid --regid=$nobody_gid --clear-groups " : '')
        . "tar -C '$clone' -xf -");
    is($rc, 0, "$who: copy the tree into $clone") or diag($out);
    ($rc, $out) = run_in($clone, $as_nobody, 'mkdir', '-p', 'build/modules');
    # copied as root: the repo itself may be in a private folder
    ($rc, $out) = run_in($clone, 0, 'cp', $so, 'build/modules/ngx_http_sse_module.so');
    is($rc, 0, "$who: the built module is in the clone") or diag($out);
    chown $nobody_uid, $nobody_gid, "$clone/build/modules/ngx_http_sse_module.so" if $as_nobody;

    # the premise: nginx's default worker user cannot read the clone
    my ($r_rc) = run_in('/', 1, 'test', '-r', "$clone/conf-examples/demo/index.html");
    if ($as_nobody) {
        is($r_rc, 0, "$who: nobody owns the clone and can read it");
    } else {
        isnt($r_rc, 0, "$who: nobody cannot read the page inside the private clone");
    }

    my $port = SSETest::_free_port();
    ($rc, $out) = run_in($clone, $as_nobody, 'make', '-o', 'deps', '-o', 'build',
                         'run', "RUN_PORT=$port");
    is($rc, 0, "$who: make run succeeds") or diag($out);
    like($out, qr{demo page\s+http://127\.0\.0\.1:$port/}, "$who: make run prints the page's address");
    my ($pidtext) = SSETest::_slurp("$clone/build/run/nginx.pid") // '';
    my ($pid) = $pidtext =~ /(\d+)/;
    ok($pid, "$who: nginx wrote its pid") or return;
    my $srv = bless { port => $port, pid => $pid, stopped => 1 }, 'SSETest::Server';

    my $page = http($srv, 'GET', '/');
    is($page->{status}, 200, "$who: GET / answers 200") or diag($page->{body});
    like($page->{body}, qr{<title>ngx_http_sse_module demo</title>}, "$who: it is the demo page");
    for my $f ('/app.js', '/style.css') {
        is(http($srv, 'GET', $f)->{status}, 200, "$who: GET $f answers 200");
    }

    my $s = sse_connect($srv, '/events/news');
    is($s->status, 200, "$who: a stream opens");
    ok($srv->wait_stat(subscribers => 1, 10), "$who: the hub counts it");
    # 40k: more than client_body_buffer_size, nginx writes it to a temp file
    my $big = ('0123456789abcdef' x 2560);
    my $r = publish($srv, '/publish/news', $big);
    is($r->{status}, 201, "$who: a 40 KB publish (kept in a temp file) answers 201")
        or diag($r->{body} . SSETest::_slurp("$clone/build/run/logs/error.log"));
    my ($ev) = $s->read_events(count => 1, timeout => 10);
    is($ev && $ev->{data}, $big, "$who: the stream gets it");
    $s->close;

    my @workers = $srv->child_pids;
    ok(@workers >= 1, "$who: nginx has workers");
    is_deeply([map { uid_of($_) } @workers], [map { $nobody_uid } @workers],
              "$who: the workers run as nobody, not root");

    my $www = SSETest::_slurp("$clone/build/run/www") // '';
    chomp $www;
    like($www, qr{^/tmp/ngx-sse-demo\.\w+$}, "$who: the page was copied outside the clone ($www)");
    ok(-f "$www/html/index.html", "$who: the copy is there");

    ($rc, $out) = run_in($clone, $as_nobody, 'make', 'stop');
    is($rc, 0, "$who: make stop succeeds") or diag($out);
    ok(wait_until(sub { !kill(0, $pid) }, 10), "$who: nginx is gone");
    ok(!-e $www, "$who: make stop removed $www");
    kill 'KILL', $pid if kill 0, $pid;
}

try_make_run('root', 0);
try_make_run('nobody', 1);

done_testing;

#!/usr/bin/perl
# The Debian package, as a user installs it: make deb builds
# libnginx-mod-http-sse_<version>_<arch>.deb; dpkg -i puts it into the
# machine's nginx (the .so in /usr/lib/nginx/modules, mod-http-sse.conf in
# modules-available, the modules-enabled link); Debian's stock
# /etc/nginx/nginx.conf then passes nginx -t with a conf.d snippet that uses
# sse_stream and sse_publish; an nginx started from that installed setup
# (its own prefix, pid, logs; 127.0.0.1 only) delivers a published event;
# dpkg --purge leaves nothing of the package behind, and the stock config
# passes nginx -t again.
#
# Needs root (dpkg -i into the system). The machine is left as it was found,
# also when the test fails or is interrupted halfway: the END block stops
# the nginx it started, removes its conf.d snippet and purges the package it
# installed. It refuses to run when the package (or a module file of that
# name) is on the machine already. Two runs at once (two clones) wait for
# each other on a lock file.
#
# nginx -t is not only a parse: it binds and listens on every listen
# address of the config for a moment (strace shows it; only EADDRINUSE is
# ignored under -t), and the stock sites-enabled/default has 0.0.0.0:80 and
# [::]:80. The stock nginx -t therefore runs in a network namespace of its
# own (unshare --net, lo up): it opens nothing on the machine's addresses,
# and its 127.0.0.1 port cannot collide with another test's. The nginx that
# serves the event runs in the machine's namespace, on 127.0.0.1 only.
use strict;
use warnings;
use Test::More;
use FindBin;
use File::Temp qw(tempdir);
use Fcntl qw(:flock);
use IO::Socket::INET;
use IO::Select;
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Time::HiRes qw(time sleep);
use POSIX qw(WNOHANG);

plan skip_all => 'installs a Debian package into the machine\'s nginx (dpkg -i): needs root, as CI runs'
    unless $> == 0;

my $REPO    = "$FindBin::Bin/..";
my $PKG     = 'libnginx-mod-http-sse';
my $NGINX   = '/usr/sbin/nginx';
my $SO      = '/usr/lib/nginx/modules/ngx_http_sse_module.so';
my $AVAIL   = '/usr/share/nginx/modules-available/mod-http-sse.conf';
my $ENABLED = '/etc/nginx/modules-enabled/50-mod-http-sse.conf';
my $DOC     = "/usr/share/doc/$PKG";
my $SNIPPET = '/etc/nginx/conf.d/sse-80-deb-test.conf';
my $LOCK    = (-d '/run/lock' ? '/run/lock' : '/tmp') . '/ngx_http_sse_module-80-deb.lock';
my $TIMEOUT = 10;
# what the package (or this test) puts on the machine; none may be there
# before the test, none is after it
my @OURS    = ($SO, $AVAIL, $ENABLED, "$ENABLED.removed", $SNIPPET);

# ------------------------------------------------------------- cleanup

my %made;              # what this test did to the machine, for END
my $nginx_pid;         # the nginx started from the installed setup

sub run_cmd {          # (exit code, stdout+stderr)
    my @cmd = @_;
    my $out = qx{@{[ join ' ', map { shell_quote($_) } @cmd ]} 2>&1};
    return ($? >> 8, $out // '');
}

sub shell_quote {
    my ($s) = @_;
    return $s if $s =~ m{\A[\w./:=+,-]+\z};
    $s =~ s/'/'\\''/g;
    return "'$s'";
}

# dpkg with the frontend lock retried: other apt-get/dpkg runs on the
# machine hold it for a while, and dpkg itself does not wait
sub dpkg {
    my @args = @_;
    my $deadline = time() + 600;
    while (1) {
        my ($rc, $out) = run_cmd('dpkg', @args);
        return ($rc, $out) unless $rc != 0 && $out =~ /lock/i && $out =~ /locked|held|another process/i
                                  && time() < $deadline;
        sleep 2;
    }
}

sub pkg_status {        # '' when dpkg knows nothing of it
    my ($rc, $out) = run_cmd('dpkg-query', '-W', '-f=${Status}|${Version}', $PKG);
    return $rc == 0 ? $out : '';
}

sub pkg_present {
    my $st = pkg_status();
    return $st ne '' && $st !~ /\bnot-installed\|/;
}

sub alive { my ($pid) = @_; return $pid && kill(0, $pid) }

sub stop_nginx {        # 1 if it quit on QUIT within $TIMEOUT s
    my ($pid) = @_;
    return 1 unless alive($pid);
    kill 'QUIT', $pid;
    my $t = time() + $TIMEOUT;
    sleep 0.05 while alive($pid) && time() < $t;
    return 1 unless alive($pid);
    kill 'TERM', $pid;
    $t = time() + 3;
    sleep 0.05 while alive($pid) && time() < $t;
    kill 'KILL', $pid if alive($pid);
    return 0;
}

sub cleanup {
    if ($nginx_pid && alive($nginx_pid)) {
        diag("cleanup: stopping nginx $nginx_pid");
        stop_nginx($nginx_pid);
    }
    $nginx_pid = undef;
    if ($made{snippet} && -e $SNIPPET) {
        diag("cleanup: removing $SNIPPET");
        unlink $SNIPPET;
    }
    delete $made{snippet};
    if ($made{package} && pkg_present()) {
        diag("cleanup: dpkg --purge $PKG");
        my ($rc, $out) = dpkg('--purge', $PKG);
        diag("dpkg --purge failed:\n$out") if $rc != 0;
    }
    # what a broken package left behind: none of these was there when the
    # test started (it refuses to run otherwise)
    if ($made{package} && !pkg_present()) {
        for my $f (@OURS) {
            next unless -e $f || -l $f;
            my ($rc) = run_cmd('dpkg-query', '-S', $f);
            next if $rc == 0;                     # another package's file
            diag("cleanup: removing $f, left behind by the package");
            unlink $f;
        }
    }
    delete $made{package};
}

END {
    my $rc = $?;
    cleanup();
    $? = $rc;
}
$SIG{$_} = sub { die "interrupted by SIG$_[0]\n" } for qw(INT TERM HUP);

# ------------------------------------------------------------- helpers

# Debian's stock /etc/nginx/nginx.conf, nginx -t, in a network namespace of
# its own (see the top comment)
sub stock_nginx_t {
    return run_cmd('unshare', '--net', '--', 'sh', '-c',
                   "ip link set lo up && exec $NGINX -t");
}

sub slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    return scalar <$fh>;
}

sub spew {
    my ($f, $text) = @_;
    open my $fh, '>', $f or die "write $f: $!\n";
    print $fh $text;
    close $fh or die "write $f: $!\n";
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
        Proto => 'tcp', Listen => 1, ReuseAddr => 1) or die "no free port: $!\n";
    my $p = $s->sockport;
    close $s;
    return $p;
}

sub connect_port {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
        Proto => 'tcp', Timeout => $TIMEOUT) or return undef;
    binmode $s;
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    return $s;
}

# reads from $sock into $$buf until $done->() or $timeout s; 0 at EOF
sub read_until {
    my ($sock, $buf, $done, $timeout) = @_;
    my $sel = IO::Select->new($sock);
    my $end = time() + $timeout;
    until ($done->()) {
        my $left = $end - time();
        return 0 if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($sock, my $chunk, 65536);
        return 0 unless $n;
        $$buf .= $chunk;
    }
    return 1;
}

# the complete chunks of a chunked body, as far as they have arrived
sub dechunk {
    my ($raw) = @_;
    my ($out, $pos) = ('', 0);
    while ($raw =~ /\G([0-9a-fA-F]+)[^\r\n]*\r\n/gc) {
        my $n = hex $1;
        my $start = pos($raw);
        last if $n == 0 || length($raw) < $start + $n + 2;
        $out .= substr($raw, $start, $n);
        pos($raw) = $start + $n + 2;
    }
    return $out;
}

sub parse_head {
    my ($head) = @_;
    my ($status) = $head =~ m{\AHTTP/1\.[01] (\d{3})};
    my %h;
    $h{lc $1} = $2 while $head =~ /^([^:\r\n]+):[ \t]*([^\r\n]*)\r$/mg;
    return ($status // 0, \%h);
}

# one request on its own connection (Connection: close), read to the end
sub request {
    my ($port, $method, $path, $body) = @_;
    my $s = connect_port($port) or return { status => 0, error => "connect: $!" };
    my $req = "$method $path HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    $req .= "Content-Type: text/plain\r\nContent-Length: " . length($body) . "\r\n"
        if defined $body;
    $req .= "\r\n" . ($body // '');
    syswrite($s, $req) == length($req) or return { status => 0, error => "write: $!" };
    my $buf = '';
    read_until($s, \$buf, sub { 0 }, $TIMEOUT);
    close $s;
    my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
    my ($status, $h) = parse_head($head // '');
    $rest //= '';
    $rest = dechunk($rest) if lc($h->{'transfer-encoding'} // '') eq 'chunked';
    return { status => $status, headers => $h, body => $rest };
}

# ---------------------------------------------------------------- lock

open my $lock_fh, '>>', $LOCK or BAIL_OUT("cannot open $LOCK: $!");
unless (flock($lock_fh, LOCK_EX | LOCK_NB)) {
    diag("another run of t/80-deb.t holds $LOCK: waiting for it (15 minutes at most)");
    my $end = time() + 900;
    sleep 1 until flock($lock_fh, LOCK_EX | LOCK_NB) || time() > $end;
    flock($lock_fh, LOCK_EX | LOCK_NB)
        or BAIL_OUT("another run of t/80-deb.t held $LOCK for 15 minutes");
}

# ------------------------------------------------------ the machine first

# what the test must not overwrite, nor remove afterwards
{
    my $st = pkg_status();
    if ($st ne '' && $st !~ /\bnot-installed\|/) {
        fail("$PKG is on this machine already ($st): this test installs and "
             . "purges it, so it refuses to run; remove it with dpkg --purge $PKG "
             . "(and reinstall it after the test) to run it");
        done_testing();
        exit 1;
    }
    my @there = grep { -e $_ || -l $_ } @OURS;
    if (@there) {
        fail("files of the package or of this test are there without the package: @there "
             . "(a copy by hand, or a run of this test killed with SIGKILL); "
             . "the test would overwrite and then remove them, so it refuses to run");
        done_testing();
        exit 1;
    }
    for my $f ($NGINX, '/etc/nginx/nginx.conf', '/etc/nginx/modules-enabled', '/etc/nginx/conf.d') {
        die "$f is missing: Debian's nginx is not installed (make deps)\n" unless -e $f;
    }
    my ($rc, $out) = stock_nginx_t();
    ok($rc == 0, 'before the test: the stock /etc/nginx/nginx.conf passes nginx -t')
        or do { diag($out); done_testing(); exit 1 };
}

# ----------------------------------------------------------- make deb

my ($version) = (slurp("$REPO/debian/changelog") // '') =~ /\A\S+ \(([^)]+)\)/;
ok(defined $version, "version from debian/changelog: " . ($version // '?'));
chomp(my $arch = qx{dpkg --print-architecture});
my $deb = "$REPO/build/deb/${PKG}_${version}_${arch}.deb";
{
    # a make of its own, not a sub-make of the make test that may run us
    local @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL)};
    delete @ENV{qw(MAKEFLAGS MFLAGS MAKELEVEL)};
    my ($rc, $out) = run_cmd('make', '-C', $REPO, 'deb');
    ok($rc == 0, 'make deb') or diag(substr($out, -4000));
}
ok(-f $deb, "make deb made build/deb/${PKG}_${version}_${arch}.deb")
    or do { done_testing(); exit 1 };

# --- what the .deb holds and says, before it is installed
{
    my ($rc, $list) = run_cmd('dpkg-deb', '-c', $deb);
    for my $path (".$SO", ".$AVAIL", ".$DOC/copyright", ".$DOC/changelog.Debian.gz",
                  ".$DOC/README.md.gz", ".$DOC/examples/minimal.conf",
                  ".$DOC/examples/demo.conf") {
        like($list, qr/ \Q$path\E$/m, "the .deb holds $path");
    }
    unlike($list, qr{ \./etc/}m, 'the .deb holds nothing in /etc (the link is made by postinst)');

    my ($rc2, $depends) = run_cmd('dpkg-deb', '-f', $deb, 'Depends');
    chomp $depends;
    my ($abi) = (slurp('/usr/share/nginx/src/debian/libnginx-mod.abisubstvars') // '')
        =~ /^nginx:abi=(\S+)/m;
    ok($abi, "nginx-dev names the nginx ABI: " . ($abi // '?'));
    like($depends, qr/(?:\A|, )\Q$abi\E(?:,|\z)/, "Depends has $abi ($depends)") if $abi;
    my ($rc3, $provides) = run_cmd('dpkg-query', '-W', '-f=${Provides}', 'nginx');
    like($provides, qr/\b\Q$abi\E\b/, "the installed nginx provides $abi") if $abi;

    # ${shlibs:Depends}: every library the module links names its package
    my $tmp = tempdir('sse-80-deb-x-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my ($rcx, $xout) = run_cmd('dpkg-deb', '-x', $deb, $tmp);
    my ($rcr, $dyn) = run_cmd('readelf', '-d', "$tmp$SO");
    my @needed = $dyn =~ /\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g;
    ok(@needed, "the module's NEEDED libraries: @needed") or diag($dyn);
    my ($rcd, $ldd) = run_cmd('ldd', "$tmp$SO");
    for my $lib (@needed) {
        my ($path) = $ldd =~ /^\s*\Q$lib\E => (\S+)/m;
        my $p;
        # dpkg knows the path it unpacked: /lib/... or /usr/lib/... (merged /usr)
        for my $try (grep { defined } $path, ($path // '') =~ m{\A/usr(/.*)} ? $1 : "/usr$path") {
            my ($rcs, $owner) = run_cmd('dpkg-query', '-S', $try);
            ($p) = $owner =~ /\A([^:\s]+)/ if $rcs == 0;
            last if $p;
        }
        ok($p && $depends =~ /(?:\A|, )\Q$p\E(?: \(|,|\z)/,
           "$lib (" . ($path // 'not found') . ") comes from " . ($p // '?') . ", which Depends names")
            or diag($ldd);
    }
}

# -------------------------------------------------------------- dpkg -i

$made{package} = 1;
{
    my ($rc, $out) = dpkg('-i', $deb);
    ok($rc == 0, "dpkg -i $PKG") or diag($out);
    is(pkg_status(), "install ok installed|$version", "dpkg: $PKG $version installed");
}
ok(-f $SO, "$SO installed");
is(slurp($AVAIL), "load_module modules/ngx_http_sse_module.so;\n",
   "$AVAIL loads the module");
is(readlink($ENABLED), $AVAIL, "postinst linked $ENABLED to it");
ok(-f "$DOC/copyright" && -f "$DOC/README.md.gz" && -f "$DOC/examples/minimal.conf",
   "copyright, README and the conf examples in $DOC");
{
    my $c = slurp("$DOC/copyright") // '';
    my ($text) = $c =~ /^License: BSD-2-clause\n((?: .*\n)+)/m;
    ok($c =~ m{\AFormat: https://www\.debian\.org/doc/packaging-manuals/copyright-format/1\.0/\n}
       && $c =~ /^Files: \*\nCopyright: .*ngx_http_sse_module developers\nLicense: BSD-2-clause\n/m
       && ($text // '') =~ /Redistribution and use in source and binary forms/,
       'copyright is machine-readable (DEP-5): Files: *, BSD-2-clause, with the license text');
}

# ------------------------------------------- the stock config + a snippet

my $port = free_port();
spew($SNIPPET, <<"EOC");
# written by t/80-deb.t of ngx_http_sse_module; removed when the test ends
sse_zone sse_deb_test:4m;

server {
    listen 127.0.0.1:$port;

    location ~ ^/events/(.+)\$ {
        sse_stream \$1;
    }

    location ~ ^/publish/(.+)\$ {
        allow 127.0.0.1;
        deny  all;
        sse_publish \$1;
    }
}
EOC
$made{snippet} = 1;
{
    my ($rc, $out) = stock_nginx_t();
    ok($rc == 0 && $out =~ /test is successful/,
       "the stock nginx.conf with the module enabled and $SNIPPET passes nginx -t")
        or diag($out);
}

# -------------------------- an nginx from the installed setup, 127.0.0.1

my $dir = tempdir('sse-80-deb-XXXXXX', TMPDIR => 1, CLEANUP => 1);
chmod 0755, $dir;
# load_module modules/... is relative to the prefix: the stock prefix
# (/usr/share/nginx) has modules -> /usr/lib/nginx/modules, so this one has
# the same link
symlink('/usr/share/nginx/modules', "$dir/modules") or die "symlink: $!\n";
spew("$dir/nginx.conf", <<"EOC");
# the stock nginx.conf's module loading and conf.d snippet, with a pid,
# logs and temp paths of its own
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log info;
include /etc/nginx/modules-enabled/*.conf;

events {
    worker_connections 768;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log $dir/access.log;
    client_body_temp_path $dir/client_body_temp;
    proxy_temp_path $dir/proxy_temp;
    fastcgi_temp_path $dir/fastcgi_temp;
    uwsgi_temp_path $dir/uwsgi_temp;
    scgi_temp_path $dir/scgi_temp;

    include $SNIPPET;
}
EOC
{
    my ($rc, $out) = run_cmd($NGINX, '-p', "$dir/", '-c', "$dir/nginx.conf", '-e', "$dir/error.log");
    ok($rc == 0, 'nginx starts from the installed module and snippet')
        or diag($out . (slurp("$dir/error.log") // ''));
    my $end = time() + $TIMEOUT;
    until ($nginx_pid || time() > $end) {
        ($nginx_pid) = (slurp("$dir/nginx.pid") // '') =~ /(\d+)/;
        sleep 0.05 unless $nginx_pid;
    }
    ok($nginx_pid, "nginx wrote $dir/nginx.pid");
}
my $up = 0;
{
    my $end = time() + $TIMEOUT;
    until ($up || time() > $end) {
        my $s = connect_port($port);
        if ($s) { $up = 1; close $s } else { sleep 0.05 }
    }
    ok($up, "nginx accepts on 127.0.0.1:$port");
}
{
    # its 2 workers have mapped the installed .so (not a copy in build/)
    my @workers;
    my $end = time() + $TIMEOUT;
    while (1) {
        @workers = grep { (slurp("/proc/$_/stat") // '') =~ /^\d+ \(nginx\) \S (\d+)/
                          && $1 == ($nginx_pid // -1) }
                   map { m{/proc/(\d+)\z} ? $1 : () } glob('/proc/[0-9]*');
        last if @workers >= 2 || time() > $end;
        sleep 0.05;
    }
    my @with_so = grep { (slurp("/proc/$_/maps") // '') =~ m{ \Q$SO\E$}m } @workers;
    ok(@workers == 2 && @with_so == 2, "its 2 workers (@workers) have $SO mapped")
        or diag("workers with it: @with_so");
}

# --- subscribe, publish once, the event arrives
my $token = "from the package " . int(rand(1e9));
{
    my $s = connect_port($port);
    ok($s, 'subscriber connects');
    my $req = "GET /events/deb-test HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
    syswrite($s, $req) if $s;
    my $buf = '';
    read_until($s, \$buf, sub { index($buf, "\r\n\r\n") >= 0 }, $TIMEOUT) if $s;
    my ($head, $raw) = split /\r\n\r\n/, $buf, 2;
    my ($status, $h) = parse_head($head // '');
    is($status, 200, 'GET /events/deb-test: 200');
    is($h->{'content-type'}, 'text/event-stream; charset=utf-8', 'the stream is text/event-stream');

    my $r = request($port, 'POST', '/publish/deb-test', $token);
    is($r->{status}, 201, 'POST /publish/deb-test: 201') or diag(explain($r));
    my ($id) = ($r->{body} // '') =~ /"id":"([^"]+)"/;
    like($r->{body} // '', qr/"subscribers":1\b/, 'the publish reached the one subscriber');
    ok($id, "the publish answered an event id: " . ($id // '?'));

    $raw //= '';
    my $body = sub { dechunk($raw) };
    my $want = defined $id ? "id: $id\ndata: $token\n\n" : "data: $token\n\n";
    my $got = $s ? read_until($s, \$raw, sub { index($body->(), $want) >= 0 }, $TIMEOUT) : 0;
    ok($got, 'the subscriber receives the event: ' . ($want =~ s/\n/\\n/gr))
        or diag("stream body so far: " . ($body->() =~ s/\n/\\n/gr));
    close $s if $s;
}

# --- stop it
{
    my $quit = stop_nginx($nginx_pid);
    ok($quit && !alive($nginx_pid), 'nginx quits on QUIT');
    $nginx_pid = undef;
    my @bad = grep { /\[(?:alert|emerg|crit)\]|exited on signal/ } split /\n/, slurp("$dir/error.log") // '';
    ok(!@bad, 'its error.log has no alert/emerg/crit/crash line') or diag(join "\n", @bad);
}

# ---------------------------------------------------------- dpkg --purge

{
    my ($rc, $out) = dpkg('--purge', $PKG);
    ok($rc == 0, "dpkg --purge $PKG") or diag($out);
    ok(!pkg_present(), "dpkg: $PKG is not installed") or diag(pkg_status());
    my ($rcl, $list) = run_cmd('dpkg', '-L', $PKG);
    ok($list !~ m{^/}m, "dpkg -L $PKG lists nothing") or diag($list);
    my @left = grep { -e $_ || -l $_ } $SO, $AVAIL, $ENABLED, "$ENABLED.removed", $DOC,
        glob("/var/lib/dpkg/info/$PKG.*"), glob("/var/lib/dpkg/info/$PKG:*");
    ok(!@left, 'nothing of the package is left: no .so, no snippet, no link, no doc')
        or diag("left: @left");
}
{
    # the module is gone: the snippet that uses it no longer passes
    my ($rc, $out) = stock_nginx_t();
    ok($rc != 0 && $out =~ /unknown directive "sse_zone"/,
       "without the package, nginx -t refuses $SNIPPET (unknown directive \"sse_zone\")")
        or diag($out);
}
unlink $SNIPPET;
delete $made{snippet} unless -e $SNIPPET;
ok(!-e $SNIPPET, "$SNIPPET removed");
{
    my ($rc, $out) = stock_nginx_t();
    ok($rc == 0 && $out =~ /test is successful/,
       'after the purge the stock /etc/nginx/nginx.conf passes nginx -t')
        or diag($out);
}

done_testing();

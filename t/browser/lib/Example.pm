package Example;

# Runs a file of conf-examples/ the way a user would, in a temp folder.
#
#   my $ex  = Example->new('cors.conf', fill => {
#                 '127.0.0.1:8080' => "127.0.0.1:$port",
#                 'https://www.example.com' => "http://127.0.0.1:$page_port" });
#   my $t   = $ex->config_test;            # { ok => 0|1, output => '...' }
#   my $srv = $ex->start;                  # an SSETest::Server on the first port
#   my $res = $srv->http(GET => '/events/news');   # (and publish, sse_connect, reload, stop)
#   my $other = $ex->client($port2);       # the same calls on another port
#   Example->new('demo.conf', fill => sub { my ($dir) = @_; { '@DIR@' => $dir } });
#
# What is changed in the file, and nothing else: the load_module path
# (modules/ngx_http_sse_module.so) becomes the module built here (SSE_MODULE),
# each key of "fill" becomes its value (ports, host names, certificate
# files: longest keys first), and what nginx would write outside the temp
# folder is put in it: the pid file and the error log (nginx -g / -e) and,
# after "http {", the temp folders and the access log the file does not set.
# $ex->conf is the result, $ex->dir the folder.

use strict;
use warnings;
use File::Temp ();
use File::Spec;
use IO::Socket::INET;
use SSETest ();

sub new {
    my ($class, $name, %o) = @_;
    my $file = SSETest::repo_dir() . "/conf-examples/$name";
    open my $fh, '<', $file or die "$file: $!";
    my $text = do { local $/; <$fh> };
    close $fh;
    my $dir = File::Temp::tempdir('sse-example-XXXXXX', TMPDIR => 1,
                                  CLEANUP => !$ENV{KEEP});
    chmod 0755, $dir;         # nginx's workers may run as nobody
    mkdir "$dir/logs";       # as in nginx's prefix
    my $so = module_path();
    die "module $so not found (build it with make, or set SSE_MODULE)\n" unless -f $so;
    # fill may be a sub: it gets the folder and returns the pairs
    my $f = $o{fill} || {};
    my %fill = ref $f eq 'CODE' ? %{ $f->($dir) } : %$f;
    my $conf = $text;
    $conf =~ s{\bload_module\s+\S*ngx_http_sse_module\.so\s*;}{load_module $so;}g;
    for my $k (sort { length($b) <=> length($a) || $a cmp $b } keys %fill) {
        $conf =~ s/\Q$k\E/$fill{$k}/g;
    }
    my @add;
    for my $d (qw(client_body_temp_path proxy_temp_path fastcgi_temp_path
                  uwsgi_temp_path scgi_temp_path)) {
        (my $sub = $d) =~ s/_path$//;
        push @add, "    $d $dir/$sub;" unless $conf =~ /^\s*\Q$d\E\s/m;
    }
    push @add, "    access_log $dir/access.log;" unless $conf =~ /^\s*access_log\s/m;
    $conf =~ s/^(http\s*\{[^\n]*\n)/$1 . "    # added by the test\n" . join("\n", @add) . "\n"/me
        or die "$name: no 'http {' line\n";
    my $self = bless {
        name => $name, dir => $dir, conf => $conf, text => $text,
        bin => $ENV{NGINX_BIN} || '/usr/sbin/nginx',
    }, $class;
    open my $out, '>', "$dir/nginx.conf" or die "write conf: $!";
    print $out $conf;
    close $out;
    return $self;
}

# conf-examples/demo.conf as make run fills it in, with the page copied
# into the temp folder as make run copies it out of the clone
sub demo {
    my ($class, $port) = @_;
    my $repo = SSETest::repo_dir();
    return $class->new('demo.conf', fill => sub {
        my ($dir) = @_;
        mkdir "$dir/html";
        mkdir "$dir/tmp";
        system('cp', '-R', "$repo/conf-examples/demo/.", "$dir/html") == 0 or die "cp: $?";
        system('chmod', '-R', 'a+rX', "$dir/html", "$dir/tmp") == 0 or die "chmod: $?";
        return { '@MODULE@' => module_path(), '@DIR@/logs/error.log' => "$dir/error.log",
                 '@DIR@' => $dir, '@HTML@' => "$dir/html", '@TMP@' => "$dir/tmp",
                 '@PORT@' => $port };
    });
}

sub module_path {
    return File::Spec->rel2abs($ENV{SSE_MODULE}
        || SSETest::repo_dir() . '/build/modules/ngx_http_sse_module.so');
}

sub dir  { $_[0]{dir} }
sub conf { $_[0]{conf} }
sub text { $_[0]{text} }

# the listen ports of the filled-in config, in order
sub ports {
    my ($self) = @_;
    my @p = $self->{conf} =~ /^\s*listen\s+(?:[\d.]+:|\[[^\]]*\]:)?(\d+)\b/mg;
    return @p;
}

sub _args {
    my ($self) = @_;
    my $d = $self->{dir};
    my @a = ('-p', "$d/", '-c', "$d/nginx.conf", '-e', "$d/error.log");
    push @a, '-g', "pid $d/nginx.pid;" unless $self->{conf} =~ /^\s*pid\s/m;
    return @a;
}

sub _pidfile {
    my ($self) = @_;
    return $1 if $self->{conf} =~ /^\s*pid\s+(\S+?);/m;
    return "$self->{dir}/nginx.pid";
}

sub _run {
    my ($self, @cmd) = @_;
    my $pid = open(my $fh, '-|');
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDERR, '>&', \*STDOUT;
        exec @cmd or exit 127;
    }
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    return ($? == 0, $out);
}

# nginx -t on the filled-in config
sub config_test {
    my ($self) = @_;
    my ($ok, $out) = $self->_run($self->{bin}, '-t', $self->_args);
    return { ok => $ok ? 1 : 0, output => $out };
}

# starts nginx; an SSETest::Server whose port is the first listen port
# (or $o{port}); dies when nginx does not start
sub start {
    my ($self, %o) = @_;
    my ($ok, $out) = $self->_run($self->{bin}, $self->_args);
    die "nginx did not start with $self->{name}:\n$out\n"
        . (SSETest::_slurp("$self->{dir}/error.log") // '') . "--- conf ---\n$self->{conf}"
        unless $ok;
    my $pidfile = $self->_pidfile;
    my $pid;
    SSETest::wait_until(sub {
        my $t = SSETest::_slurp($pidfile);
        ($pid) = $t =~ /(\d+)/ if defined $t;
        $pid;
    }, 10);
    die "nginx wrote no pid file $pidfile\n" unless $pid;
    my ($workers) = $self->{conf} =~ /^\s*worker_processes\s+(\d+)/m;
    my $srv = bless {
        port => $o{port} // ($self->ports)[0], dir => $self->{dir}, bin => $self->{bin},
        workers => $workers // 1, conf => $self->{conf}, owner => $$, stopped => 0,
        allow_log => [], opts => {}, pid => $pid,
    }, 'SSETest::Server';
    # (stop() reads $dir/error.log: a file with its own error_log is
    # filled in to write there)
    $SSETest::LIVE{"$srv"} = $srv;
    $SSETest::CURRENT = $srv;
    SSETest::wait_until(sub { scalar($srv->worker_pids) >= $srv->{workers} }, 10);
    for my $p ($self->ports) {
        SSETest::wait_until(sub {
            IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $p,
                                  Proto => 'tcp', Timeout => 1);
        }, 10, 0.05) or do { $srv->stop; die "nothing listens on $p\n" };
    }
    $self->{srv} = $srv;
    return $srv;
}

# an SSETest::Server-like handle for client calls on another port of it
sub client {
    my ($self, $port) = @_;
    return bless { port => $port, stopped => 1, dir => $self->{dir}, pid => 0,
                   allow_log => [] }, 'SSETest::Server';
}

1;

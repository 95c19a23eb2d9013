#!/usr/bin/perl
# conf-examples/redis.conf as a user would run it: two nginx nodes with the
# same file (only the module path, the listen port, the Redis port and,
# for the test, the pid/log/temp paths filled in), one redis-server.
# nginx -t passes; an event POSTed on node 1 and a PUBLISH on Redis reach
# a subscriber on node 2 with the log's ids.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use File::Temp qw(tempdir);
use File::Spec;
use Time::HiRes qw(time sleep);

my $example = repo_dir() . '/conf-examples/redis.conf';
my $text = SSETest::_slurp($example);
defined $text or die "no $example\n";
my $so = File::Spec->rel2abs($ENV{SSE_MODULE} || repo_dir() . '/build/modules/ngx_http_sse_module.so');
my $bin = $ENV{NGINX_BIN} || '/usr/sbin/nginx';
my $r = SSERedis->start;

# the example with its blanks filled in, in a directory of its own
sub node_conf {
    my ($n) = @_;
    my $dir = tempdir("sse-example-$n-XXXXXX", TMPDIR => 1, CLEANUP => !$ENV{KEEP});
    chmod 0755, $dir;
    my $port = SSETest::_free_port();
    my $t = $text;
    my %count;
    $count{module} = $t =~ s{^load_module\s+modules/ngx_http_sse_module\.so;}{load_module  $so;}mg;
    $count{listen} = $t =~ s{^(\s*listen\s+)127\.0\.0\.1:8080;}{${1}127.0.0.1:$port;}mg;
    $count{redis}  = $t =~ s{^(\s*sse_redis\s+)redis://127\.0\.0\.1:6379;}{${1}redis://127.0.0.1:@{[ $r->port ]};}mg;
    is(join(',', map { "$_=$count{$_}" } sort keys %count), 'listen=1,module=1,redis=1',
       "node $n: the example has one load_module, one listen 127.0.0.1:8080, one sse_redis redis://127.0.0.1:6379");
    # test only: files in the temp dir instead of /run, /var/log, /var/lib/nginx
    my $user = $> == 0 ? "user root;\n" : '';
    $t =~ s{^events\b}{${user}pid $dir/nginx.pid;\nerror_log $dir/error.log info;\n\nevents}m;
    my $paths = join '', map { "    $_\n" } 'access_log off;', "client_body_temp_path $dir/body;",
        "proxy_temp_path $dir/proxy;", "fastcgi_temp_path $dir/fastcgi;", "uwsgi_temp_path $dir/uwsgi;",
        "scgi_temp_path $dir/scgi;";
    $t =~ s|^(http \{\n)|$1$paths|m;
    open my $fh, '>', "$dir/nginx.conf" or die "write: $!";
    print $fh $t;
    close $fh;
    return ($dir, $port, $t);
}

sub start_node_file {
    my ($n) = @_;
    my ($dir, $port, $conf) = node_conf($n);
    my $out = qx{$bin -t -p $dir/ -c $dir/nginx.conf -e $dir/error.log 2>&1};
    ok($? == 0, "node $n: nginx -t passes on the example") or diag($out);
    $? == 0 or die "node $n: nginx -t fails on the example, nothing more to test\n";
    $out = qx{$bin -p $dir/ -c $dir/nginx.conf -e $dir/error.log 2>&1};
    ok($? == 0, "node $n: nginx starts with it") or diag($out . (SSETest::_slurp("$dir/error.log") // ''));
    my $pid;
    wait_until(sub { (($pid) = (SSETest::_slurp("$dir/nginx.pid") // '') =~ /(\d+)/) }, 10);
    my $srv = bless {
        port => $port, dir => $dir, bin => $bin, workers => 1, conf => $conf, owner => $$,
        stopped => $pid ? 0 : 1, allow_log => [], opts => {}, pid => $pid,
    }, 'SSETest::Server';
    $SSETest::LIVE{"$srv"} = $srv if $pid;
    wait_until(sub { IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp') }, 10);
    return $srv;
}

my $n1 = start_node_file(1);
my $n2 = start_node_file(2);
for my $n ([1, $n1], [2, $n2]) {
    ok(node_ready($n->[1], 15, pub => '/publish/'), "node $n->[0]: \"redis\":\"up\", POST accepted, delivered from the log");
}
ok(wait_until(sub { ingress_nodes($n1, $n2) == 1 }, 8), 'one of the two nodes holds the PUBLISH lease');
my $s = $n2->sse_connect('/events/news');
is($s->status, 200, 'a subscriber on node 2');
my $res = $n1->publish('/publish/news', 'hello from node 1');
is($res->{status}, 201, 'POST /publish/news on node 1: 201');
is($r->cmd('PUBLISH', 'sse:news', 'hello from redis'), 1, 'PUBLISH sse:news: one node takes it');
ok(wait_until(sub { scalar(my @l = $r->log_of('sse:log', 'news')) >= 2 }, 5), 'both are in sse:log');
my @log = $r->log_of('sse:log', 'news');
my @ev = $s->read_events(count => 2, timeout => 10);
is(join(',', map { "$_->{id}=$_->{data}" } @ev), join(',', map { "$_->{id}=$_->{fields}{data}" } @log),
   'the subscriber on node 2 gets both, with the log\'s ids');
is(($log[0] // {})->{id}, $res->{json}{id} // '-', 'the first is the POST, with the id it answered');
my $st = status($n1);
is($st->{redis} // '', 'up', 'node 1 /status: "redis":"up"');
$s->close;
$n1->stop;
$n2->stop;
$r->stop;
done_testing;

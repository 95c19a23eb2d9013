#!/usr/bin/perl
# Self-test of t/lib/SSERedis.pm, no nginx needed: the real redis-server
# (start, stop, start again on the same port, kill, persistence, AUTH, ACL
# users, SELECT), the RESP2 client (every reply type, binary-safe values,
# SUBSCRIBE), CLIENT PAUSE as the tests use it, the fake servers of each
# mode, and the END cleanup of everything started.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);
use POSIX ();

sub refused {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 1);
    return !$s;
}
sub pid_gone { my ($pid) = @_; return !-e "/proc/$pid" || (SSETest::Server::_proc_stat($pid))[0] =~ /^[ZX]$/ }

# --- redis-server, the client's reply types
my $r = SSERedis->start;
ok($r->pid && $r->alive, 'redis-server started (pid ' . ($r->pid // '?') . ', port ' . $r->port . ')');
is($r->cmd('PING'), 'PONG', 'PING: simple string');
is($r->cmd('SET', 'k', "a\0b\r\n\xff"), 'OK', 'SET a binary value');
is($r->cmd('GET', 'k'), "a\0b\r\n\xff", 'GET: bulk string, binary-safe');
is($r->cmd('GET', 'nope'), undef, 'nil bulk: undef');
is($r->cmd('INCR', 'n'), 1, 'integer reply');
my $e = $r->cmd('INCR', 'k');
ok(SSERedis::is_error($e) && "$e" =~ /^ERR/, "error reply is an SSERedis::Error ($e)");
is_deeply($r->cmd('MGET', 'n', 'nope'), ['1', undef], 'array reply with a nil');
is($r->cmd('XREAD', 'BLOCK', 100, 'STREAMS', 'empty', '$'), undef, 'nil array (XREAD BLOCK timeout)');
my @ids = map { $r->xadd('sse:log', channel => "c$_", data => "d$_", ($_ == 2 ? (event => 'tick') : ())) } 1 .. 3;
ok(ids_strictly_increasing(@ids), "XADD ids: @ids");
is($r->xlen('sse:log'), 3, 'XLEN');
my @x = $r->xrange_all('sse:log');
is_deeply([map { $_->{id} } @x], \@ids, 'xrange_all: ids in order');
is_deeply($x[1]{fields}, { channel => 'c2', data => 'd2', event => 'tick' }, 'xrange_all: fields');
is_deeply($x[1]{pairs}, [channel => 'c2', data => 'd2', event => 'tick'], 'xrange_all: pairs in order');
is_deeply([map { $_->{id} } $r->log_of('sse:log', 'c1', 'c3')], [@ids[0, 2]], 'log_of: entries of some channels');
my $nested = $r->cmd('XREAD', 'COUNT', 1, 'STREAMS', 'sse:log', '0');
is($nested->[0][1][0][0], $ids[0], 'nested arrays (XREAD reply)');

# SELECT
my $c2 = $r->client(db => 2);
$c2->cmd('SET', 'only2', 'x');
is($c2->cmd('GET', 'only2'), 'x', 'client(db => 2) sees its key');
is($r->cmd('GET', 'only2'), undef, 'db 0 does not');
$r->client(db => 2)->cmd('XADD', 'sse:log', '*', channel => 'two', data => 'x');
is(scalar(my @two = $r->xrange_all('sse:log', db => 2)), 1, 'xrange_all(db => 2)');

# SUBSCRIBE reading
{
    my $sub = $r->client;
    $sub->send('SUBSCRIBE', 'sse:news');
    is_deeply($sub->read_reply(2), ['subscribe', 'sse:news', 1], 'SUBSCRIBE confirmation');
    is($r->cmd('PUBLISH', 'sse:news', 'hi'), 1, 'PUBLISH: one receiver');
    is_deeply($sub->read_reply(2), ['message', 'sse:news', 'hi'], 'subscriber reads the message');
    is(scalar(my @none = $sub->poll_reply(0.2)), 0, 'poll_reply: nothing more');
}

# CLIENT PAUSE WRITE delays writes, not reads
{
    my $w = $r->client;
    is($r->cmd('CLIENT', 'PAUSE', 1000, 'WRITE'), 'OK', 'CLIENT PAUSE 1000 WRITE');
    my $t0 = time();
    is($w->cmd('GET', 'n'), '1', 'a read during the pause');
    ok(time() - $t0 < 0.5, 'the read is not delayed');
    is($w->cmd('SET', 'p', 1), 'OK', 'a write during the pause');
    my $dt = time() - $t0;
    ok($dt > 0.7, sprintf('the write waited for the pause (%.2fs)', $dt));
}

# stop, start again on the same port: no persistence by default
{
    my $port = $r->port;
    my $pid = $r->pid;
    ok($r->stop, 'stop (SHUTDOWN NOSAVE)');
    ok(!$r->alive && pid_gone($pid), 'redis-server exited');
    ok(refused($port), 'its port refuses connections');
    $r->start;
    is($r->port, $port, 'started again on the same port');
    isnt($r->pid, $pid, 'a new process');
    is($r->cmd('PING'), 'PONG', 'answers again (the admin connection reconnects)');
    is($r->cmd('EXISTS', 'sse:log'), 0, 'without persist the data is gone');
    my $pid2 = $r->pid;
    ok($r->kill, 'kill (SIGKILL)');
    ok(pid_gone($pid2) && refused($port), 'killed: gone, port closed');
}

# persistence, requirepass, ACL users
{
    my $p = SSERedis->start(persist => 1, requirepass => 'pw1',
                            users => ['alice on >wonder ~* &* +@all']);
    is($p->url, 'redis://:pw1@127.0.0.1:' . $p->port, 'url() carries the requirepass');
    is($p->url(db => 2, user => 'alice', password => 'wonder'),
       'redis://alice:wonder@127.0.0.1:' . $p->port . '/2', 'url(user, password, db)');
    is($p->url(noauth => 1), 'redis://127.0.0.1:' . $p->port, 'url(noauth)');
    my $anon = SSERedis::Client->new(port => $p->port);
    like($anon->cmd('GET', 'x') . '', qr/^NOAUTH/, 'requirepass: a client without AUTH is refused');
    is($p->cmd('SET', 'kept', 'yes'), 'OK', 'the admin client authenticates');
    my $alice = $p->client(user => 'alice', password => 'wonder');
    is_deeply([$alice->cmd('ACL', 'WHOAMI')], ['alice'], 'ACL user alice authenticates');
    ok(!eval { $p->client(user => 'alice', password => 'bad'); 1 } && $@ =~ /WRONGPASS/,
       'a wrong password dies with WRONGPASS');
    $p->xadd('sse:log', channel => 'kept', data => 'yes');
    ok($p->stop, 'persist: stop');
    $p->start;
    is($p->cmd('GET', 'kept'), 'yes', 'persist: data survives stop/start');
    is($p->xlen('sse:log'), 1, 'persist: the stream survives');
    $p->stop;
    $p->wipe;
    $p->start;
    is($p->cmd('EXISTS', 'kept'), 0, 'wipe: it comes back empty');
    $p->stop;
}

# --- fake servers
$r->start;
{
    my $f = SSERedis::Fake->start(mode => 'garbage');
    my $c = SSERedis::Client->new(port => $f->port);
    ok(!eval { $c->cmd('PING'); 1 }, 'garbage: no valid reply');
    like($@, qr/protocol error/, "garbage: the reply is a protocol error ($@)");
    ok(wait_until(sub { $f->accepts == 1 && grep { $_ eq 'PING' } $f->commands }, 3),
       'garbage: the fake logged the connection and the command');
    $f->stop;
    ok(refused($f->port) && !$f->alive, 'garbage: stopped');
}
{
    my $f = SSERedis::Fake->start(mode => 'silent');
    my $c = SSERedis::Client->new(port => $f->port);
    $c->send('PING');
    my @got = $c->poll_reply(1);
    is(scalar @got, 0, 'silent: no answer within 1s');
    ok(!$c->dead, 'silent: the connection stays open');
    $f->stop;
}
{
    my $f = SSERedis::Fake->start(mode => 'close_mid_reply');
    my $c = SSERedis::Client->new(port => $f->port);
    ok(!eval { $c->cmd('PING'); 1 }, 'close_mid_reply: no complete reply');
    like($@, qr/closed .*middle of a reply/, "close_mid_reply: closed in the middle ($@)");
    ok(length($c->{partial} // '') > 0, 'close_mid_reply: part of a reply arrived');
    $f->stop;
}
{
    my $f = SSERedis::Fake->start(mode => 'loading', loading_for => 1.5, backend_port => $r->port);
    my $c = SSERedis::Client->new(port => $f->port);
    my $e1 = $c->cmd('PING');
    ok(SSERedis::is_error($e1) && "$e1" eq 'LOADING Redis is loading the dataset in memory',
       "loading: -LOADING while loading ($e1)");
    my $e2 = $c->cmd('XADD', 'sse:log', '*', channel => 'l', data => 'x');
    like("$e2", qr/^LOADING/, 'loading: every command gets -LOADING');
    is($r->cmd('EXISTS', 'sse:log'), 0, 'loading: nothing reached the real redis');
    sleep($f->loading_left + 0.1);
    is($c->cmd('PING'), 'PONG', 'loading over: the same connection reaches the real redis');
    my $id = $c->cmd('XADD', 'sse:log', '*', channel => 'l', data => 'y');
    is(($r->xrange_all('sse:log'))[0]{id}, $id, 'loading over: the XADD landed in the real redis');
    is(SSERedis::Client->new(port => $f->port)->cmd('PING'), 'PONG', 'loading over: a new connection too');
    $f->stop;
}
{
    my $f = SSERedis::Fake->start(mode => 'proxy', backend_port => $r->port);
    my $c = SSERedis::Client->new(port => $f->port);
    is($c->cmd('PING'), 'PONG', 'proxy: relays');
    ok($f->cut, 'proxy: cut');
    ok($c->dead, 'proxy cut: the open connection is closed');
    ok(refused($f->port), 'proxy cut: connections refused');
    ok($f->restore, 'proxy: restore');
    is(SSERedis::Client->new(port => $f->port)->cmd('PING'), 'PONG', 'proxy restored: relays again');
    my $old = SSERedis::Client->new(port => $f->port);
    is($old->cmd('PING'), 'PONG', 'proxy: a connection made before hang');
    ok($f->hang, 'proxy: hang');
    $old->send('PING');
    is(scalar(my @a = $old->poll_reply(1)), 0, 'proxy hung: an open connection gets no answer');
    ok(!$old->dead, 'proxy hung: and stays open');
    my $new = SSERedis::Client->new(port => $f->port);
    $new->send('PING');
    is(scalar(my @b = $new->poll_reply(1)), 0, 'proxy hung: a new connection is accepted, no answer');
    ok($f->restore, 'proxy: restore after hang');
    is(SSERedis::Client->new(port => $f->port)->cmd('PING'), 'PONG', 'proxy restored after hang: new connections relayed');
    $old->send('PING');
    is(scalar(my @c = $old->poll_reply(1)), 0, 'proxy restored after hang: the hung connection stays hung');
    $f->stop;
}

# --- the fake does not keep the test's sockets open
{
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 5, Proto => 'tcp');
    my $cl = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $l->sockport, Proto => 'tcp');
    my $sv = $l->accept;
    my $f = SSERedis::Fake->start(mode => 'silent');
    close $cl;
    my $sel = IO::Select->new($sv);
    my $eof = $sel->can_read(2) && !sysread($sv, my $b, 10);
    ok($eof, 'a socket the test closes is closed (the forked fake did not inherit it)');
    $f->stop;
}

# --- END stops what a test left running, by pid
{
    my $lib = "$FindBin::Bin/lib";
    my $out = qx{$^X -I$lib -e 'use SSERedis; my \$r = SSERedis->start; my \$f = SSERedis::Fake->start(mode => "silent"); print \$r->pid, " ", \$f->pid, " ", \$r->port, " ", \$f->port, "\\n"; exit 0' 2>&1};
    my ($rp, $fp, $rport, $fport) = $out =~ /^(\d+) (\d+) (\d+) (\d+)$/m;
    ok($rp && $fp, 'a child script started a redis-server and a fake') or diag($out);
    ok($rp && pid_gone($rp) && refused($rport), 'END stopped its redis-server');
    ok($fp && pid_gone($fp) && refused($fport), 'END stopped its fake');
}

$r->stop;
done_testing;

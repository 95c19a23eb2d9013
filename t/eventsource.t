#!/usr/bin/perl
# A real client: the npm "eventsource" package (t/js/es-client.mjs, run with
# node) connects to nginx, receives events, loses its connection three ways
# (DELETE of the channel, a cut TCP connection, nginx -s reload), misses the
# events published meanwhile, reconnects by itself with Last-Event-ID, and
# must end up with every published event exactly once, in order.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use IPC::Open2 qw(open2);
use IO::Select;
use IO::Handle;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my $node = $ENV{NODE_BIN} || 'node';
my $script = "$FindBin::Bin/js/es-client.mjs";
my $has_node = system("$node --version >/dev/null 2>&1") == 0;
ok($has_node, "node is installed ($node)") or do {
    diag('install nodejs (make deps)');
    done_testing;
    exit;
};
ok(-f "$FindBin::Bin/node_modules/eventsource/package.json",
   'the eventsource package is installed in t/node_modules') or do {
    diag('run: npm install --prefix t');
    done_testing;
    exit;
};

my $srv = start_nginx(workers => 2, http => "sse_retry 1500ms;\nsse_history 100;\n");

# --- the node client
my ($from_node, $to_node);
my $pid = open2($from_node, $to_node, $node, $script, $srv->port, '/events/es', 'tick');
$to_node->autoflush(1);
my $sel = IO::Select->new($from_node);
my $buf = '';
my @log;          # every line node printed, decoded, with arrival time

sub node_lines {
    my ($timeout) = @_;
    my @new;
    my $deadline = time() + $timeout;
    while (1) {
        while ($buf =~ s/\A([^\n]*)\n//) {
            my $l = $1;
            my $j = eval { json_decode($l) } || { type => 'garbage', text => $l };
            $j->{t} = time();
            push @log, $j;
            push @new, $j;
        }
        return @new if @new && !$sel->can_read(0);
        my $left = $deadline - time();
        return @new if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread($from_node, $buf, 65536, length $buf);
        return @new unless $n;
    }
}

# wait for a line matching $pred; returns it (or undef after $timeout)
my @pending;
sub wait_node {
    my ($pred, $timeout, $name) = @_;
    my $deadline = time() + ($timeout // 10);
    while (1) {
        for my $i (0 .. $#pending) {
            if ($pred->($pending[$i])) {
                return splice(@pending, $i, 1);
            }
        }
        my $left = $deadline - time();
        if ($left <= 0) {
            diag("timed out waiting for: $name");
            return undef;
        }
        push @pending, node_lines($left);
    }
}

# events received by the client so far (from the whole log)
sub received { grep { $_->{type} eq 'event' } @log }

my $ready = wait_node(sub { $_[0]{type} eq 'ready' }, 10, 'ready');
ok($ready, 'node client started') or diag(join "\n", map { json_encode($_) } @log);
my $r1 = wait_node(sub { $_[0]{type} eq 'request' }, 10, 'first request');
ok($r1, 'EventSource sent its request');
is($r1->{lastEventId}, undef, 'first request has no Last-Event-ID');
ok(wait_node(sub { $_[0]{type} eq 'open' }, 10, 'open'), 'EventSource opened');
ok($srv->wait_stat(subscribers => 1, 5), 'nginx counts the subscriber');

my (@published, @expected);
sub pub {
    my ($data, %o) = @_;
    my $r = $srv->publish('/pub/es', $data, %o);
    is($r->{status}, 201, "publish '$data'") unless $r->{status} == 201;
    push @published, $r->{json}{id};
    push @expected, [$r->{json}{id}, $o{type} // 'message', $data];
    return $r->{json}{id};
}

sub wait_events {
    my ($n, $name) = @_;
    my $ok = wait_until(sub { push @pending, node_lines(0.05); scalar(received()) >= $n }, 10);
    ok($ok, "$name: client has $n events") or diag(scalar(received()) . ' received');
}

pub('hello');
pub("two\nlines", type => 'tick');
wait_events(2, 'connected');

# every disconnection below: the events published while the client is away
# arrive after it reconnects by itself with Last-Event-ID
sub outage {
    my ($name, $cause, %o) = @_;
    my $last = $published[-1];
    my $reqs_before = grep { $_->{type} eq 'request' } @log;
    my $mark = scalar @log;
    $cause->();
    my $err = wait_node(sub { $_[0]{type} eq 'error' }, 10, "$name: error event");
    ok($err, "$name: the client saw the connection drop");
    is($err->{readyState}, 0, "$name: and is reconnecting (CONNECTING)") if $err;
    my $t_pub = time();
    my @mine = map { pub("$name $_") } 1 .. 3;
    my $t_done = time();
    my $req = wait_node(sub { $_[0]{type} eq 'request' }, 10, "$name: reconnect request");
    ok($req, "$name: the client reconnected");
    ok($req && $req->{ts} >= int($t_done * 1000) || 0,
       "$name: the reconnect came after the 3 events were published (they were missed live)")
        or diag(sprintf 'published %.3f-%.3f, request at %.3f', $t_pub, $t_done, $req ? $req->{ts} / 1000 : 0);
    is($req->{lastEventId}, $last, "$name: it sent Last-Event-ID $last") if $req;
    ok(wait_node(sub { $_[0]{type} eq 'open' }, 10, "$name: open"), "$name: open again");
    wait_events(scalar @published, $name);
    my $reqs_after = grep { $_->{type} eq 'request' } @log;
    is($reqs_after, $reqs_before + 1, "$name: exactly one reconnect");
    # what the proxy saw of the stream nginx ended: the response's last
    # chunk, then nginx closing the connection, not a cut-off response
    if ($o{server_ends}) {
        my @seen = grep { $_->{type} =~ /^(?:response-end|upstream-closed|framing-error)$/ }
                   @log[$mark .. $#log];
        my $n = 0;
        $n++ until $n > $#seen || $seen[$n]{type} eq 'upstream-closed';
        @seen = @seen[0 .. ($n > $#seen ? $#seen : $n)];
        is_deeply([map { join ' ', map { $_ // 'undef' } @$_{qw(type status chunked midResponse cut)} } @seen],
                  ['response-end 200 true undef undef', 'upstream-closed 200 undef false false'],
                  "$name: the stream ended with its last chunk (0 CRLF CRLF), then nginx closed the connection")
            or diag(join "\n", map { json_encode($_) } @seen);
    }
}

outage('delete', sub {
    my $d = $srv->http('DELETE', '/pub/es');
    is($d->{status}, 200, 'DELETE the channel: 200');
    is($d->{json}{subscribers}, 1, 'DELETE ended one stream');
}, server_ends => 1);

outage('cut', sub {
    print $to_node "cut\n";
    my $c = wait_node(sub { $_[0]{type} eq 'cut' }, 5, 'cut');
    is($c && $c->{connections}, 1, 'the proxy cut the connection (the one stream)');
});

outage('reload', sub {
    ok($srv->reload, 'nginx -s reload');
}, server_ends => 1);

pub('the end', type => 'tick');
wait_events(scalar @published, 'final');

# duplicates would show up late: give them the time to
push @pending, node_lines(1);
my @got = received();
is_deeply([map { $_->{lastEventId} } @got], \@published,
          'the client received every published event exactly once, in order (no gap, no duplicate)');
is_deeply([map { [$_->{lastEventId}, $_->{event}, $_->{data}] } @got], \@expected,
          'with the right types and data (LF between lines)');
is(scalar(grep { $_->{type} eq 'garbage' } @log), 0, 'no unparsable output from node');
is(scalar(grep { $_->{type} eq 'timeout' } @log), 0, 'node did not time out');

print $to_node "close\n";
wait_node(sub { $_[0]{type} eq 'closed' }, 5, 'closed');
close $to_node;
my $gone = wait_until(sub { waitpid($pid, WNOHANG) == $pid }, 5);
unless ($gone) {
    kill 'TERM', $pid;
    waitpid($pid, 0);
}
ok($gone, 'node exited');
ok($srv->wait_stat(subscribers => 0, 5), 'nginx: the client is gone');
$srv->stop;
done_testing;

#!/usr/bin/perl
# Clients that go away: their place in the hub is freed at once, the
# others keep getting events, nothing is logged as an error.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(workers => 2);
my $mark = $srv->log_mark;

sub ids_of { map { $_->{id} // 'undef' } @_ }

my @s = map { $srv->sse_connect('/events/dc') } 1 .. 3;
is(scalar(grep { $_->status == 200 } @s), 3, 'three subscribers');
ok($srv->wait_stat(subscribers => 3, 3), 'status: 3 subscribers');

my $e1 = $srv->publish('/pub/dc', 'one')->{json}{id};
for my $i (0 .. 2) {
    my @ev = $s[$i]->read_events(count => 1, timeout => 3);
    is_deeply([ids_of(@ev)], [$e1], "subscriber $i got e1");
}

# --- FIN mid-stream
my $t0 = time();
$s[1]->close;
ok($srv->wait_stat(subscribers => 2, 3), 'status: 2 subscribers after one closed');
diag(sprintf 'freed after %.2fs', time() - $t0);
is($srv->http('GET', '/pub/dc')->{json}{subscribers}, 2, 'GET channel: 2 subscribers');
my @e = map { $srv->publish('/pub/dc', "more $_")->{json}{id} } 2 .. 3;
for my $i (0, 2) {
    my @ev = $s[$i]->read_events(count => 2, timeout => 3);
    push @ev, $s[$i]->read_events(timeout => 0.2);
    is_deeply([ids_of(@ev)], \@e, "subscriber $i still gets e2, e3");
}

# --- RST mid-stream
$s[2]->abort;
ok($srv->wait_stat(subscribers => 1, 3), 'status: 1 subscriber after a reset');
my $e4 = $srv->publish('/pub/dc', 'four')->{json}{id};
my @ev = $s[0]->read_events(count => 1, timeout => 3);
is_deeply([ids_of(@ev)], [$e4], 'the remaining subscriber gets e4');

# --- a client that stops reading, with output queued, then goes away
{
    my $stuck = $srv->sse_connect('/events/dc', rcvbuf => 4096);
    is($stuck->status, 200, 'a subscriber that will not read');
    ok($srv->wait_stat(subscribers => 2, 3), 'status: 2 subscribers');
    my (@got, @bulk);
    for my $i (1 .. 20) {
        my $r = $srv->publish('/pub/dc', "bulk $i " . ('b' x 2000));
        is($r->{json}{subscribers}, 2, "bulk $i: published to 2 subscribers") unless ($r->{json}{subscribers} // -1) == 2;
        push @bulk, $r->{json}{id};
        push @got, $s[0]->read_events(timeout => 0);
    }
    $stuck->abort;
    ok($srv->wait_stat(subscribers => 1, 3), 'status: back to 1 after it reset the connection');
    push @got, $s[0]->read_events(count => 20 - @got, timeout => 5);
    push @got, $s[0]->read_events(timeout => 0.2);
    is_deeply([ids_of(@got)], \@bulk, 'the reading subscriber got all 20 bulk events, once, in order');
}

# --- many leave at once
{
    my @many = $srv->sse_connect_many(100, sub { '/events/dc' . ($_[0] % 2 ? ',dc2' : '') });
    is(scalar(grep { $_->status == 200 } @many), 100, '100 more subscribers');
    ok($srv->wait_stat(subscribers => 101, 5), 'status: 101');
    my $half = $srv->publish('/pub/dc2', 'to half');
    is($half->{json}{subscribers}, 50, 'dc2: published to its 50 subscribers');
    $_->close for @many;
    ok($srv->wait_stat(subscribers => 1, 5), 'status: 1 after 100 closed at once');
    my $g = $srv->http('GET', '/pub/dc2');
    is($g->{status}, 200, 'dc2 still has its kept event');
    is($g->{json}{events}, 1, 'dc2: 1 event kept');
    is($g->{json}{id}, $half->{json}{id}, 'dc2: the one published');
    is($g->{json}{subscribers}, 0, 'dc2: 0 subscribers');
}

# --- a subscriber that closes before the response head was read
{
    for (1 .. 20) {
        my $x = SSETest::Stream->_open($srv, '/events/dc');
        $x->abort;
    }
    ok($srv->wait_stat(subscribers => 1, 5), 'connect-and-reset clients leave no subscriber behind');
}

my $e5 = $srv->publish('/pub/dc', 'five')->{json}{id};
@ev = $s[0]->read_events(count => 1, timeout => 3);
is_deeply([ids_of(@ev)], [$e5], 'the first subscriber is unaffected by all of it');
$s[0]->close;
ok($srv->wait_stat(subscribers => 0, 3), 'status: 0 at the end');

my $log = $srv->error_log_since($mark);
my @errs = grep { /\[(error|alert|crit|emerg)\]/ } split /\n/, $log;
is(scalar @errs, 0, 'no [error] or worse logged for clients going away')
    or diag(join "\n", @errs[0 .. ($#errs > 10 ? 10 : $#errs)]);

$srv->stop;
done_testing;

#!/usr/bin/perl
# Redis mode: what status shows (JSON "redis", "redis_logged",
# "redis_read", "redis_reconnects", "redis_ingress" and their Prometheus
# names), "off" without sse_redis; sse_redis_log keeps the log bounded;
# sse_redis_prefix moves every key and channel.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use SSERedis;
use Time::HiRes qw(time sleep);

my $r = SSERedis->start;
my $A = start_node(redis => $r, name => 'A');
my $B = start_node(redis => $r, name => 'B');
my %name = ($A => 'A', $B => 'B');

my %PROM = (
    redis_logged     => ['nginx_sse_redis_logged_total', 'counter'],
    redis_read       => ['nginx_sse_redis_read_total', 'counter'],
    redis_reconnects => ['nginx_sse_redis_reconnects_total', 'counter'],
);

# JSON and Prometheus of a node agree (taken while nothing is published)
sub check_status {
    my ($n, $what) = @_;
    my $nm = $name{$n} // 'node';
    my $res = $n->http('GET', '/status');
    my $j = $res->{json} || {};
    my $p = prometheus($n);
    is($j->{redis} // '', 'up', "$nm $what: \"redis\":\"up\"");
    for my $k (sort keys %PROM) {
        like($res->{body}, qr/"$k":\d+[,}]/, "$nm $what: \"$k\" is a JSON integer");
        my ($pn, $type) = @{ $PROM{$k} };
        is($p->{values}{$pn} // '(none)', $j->{$k} // '(none)', "$nm $what: $pn is the same number as \"$k\"");
        ok($p->{help}{$pn} && ($p->{type}{$pn} // '') eq $type, "$nm $what: $pn has # HELP and # TYPE $type");
    }
    like($res->{body}, qr/"redis_ingress":(?:true|false)[,}]/, "$nm $what: \"redis_ingress\" is a JSON boolean");
    my $ing = ($j->{redis_ingress} // '') eq 'true' ? 1 : 0;
    is($p->{values}{nginx_sse_redis_ingress} // '(none)', $ing, "$nm $what: nginx_sse_redis_ingress is $ing like the JSON");
    is($p->{values}{nginx_sse_redis_connected} // '(none)', 1, "$nm $what: nginx_sse_redis_connected 1");
    for my $g (qw(nginx_sse_redis_ingress nginx_sse_redis_connected)) {
        ok($p->{help}{$g} && ($p->{type}{$g} // '') eq 'gauge', "$nm $what: $g has # HELP and # TYPE gauge");
    }
    return $j;
}

# ---------------------------------------------------------------- fields and counters
{
    ok(wait_until(sub { ingress_nodes($A, $B) == 1 }, 8), 'exactly one of A and B has "redis_ingress":true');
    my %s0 = map { $_ => check_status($_, 'at start') } $A, $B;
    my $res = $A->publish('/pub/st', "data: 1\n\ndata: 2\n\ndata: 3\n\n", content_type => 'text/event-stream');
    is($res->{status}, 201, 'A: a batch of 3 events');
    for my $n ($A, $B) {
        ok(wait_until(sub { $n->stat('redis_read') >= ($s0{$n}{redis_read} // 0) + 3 }, 5),
           "$name{$n}: redis_read counts the 3 entries it read from the log");
    }
    is($A->stat('redis_logged') - ($s0{$A}{redis_logged} // 0), 3, 'A: redis_logged +3 (it appended them)');
    is($B->stat('redis_logged') - ($s0{$B}{redis_logged} // 0), 0, 'B: redis_logged unchanged (it did not)');
    $r->xadd('sse:log', channel => 'st', data => 'xadd');
    for my $n ($A, $B) {
        ok(wait_until(sub { $n->stat('redis_read') >= ($s0{$n}{redis_read} // 0) + 4 }, 5),
           "$name{$n}: an XADDed entry counts in redis_read");
    }
    is($A->stat('redis_logged') - ($s0{$A}{redis_logged} // 0), 3, 'A: an XADD is not in redis_logged');
    is($A->stat('redis_read') - ($s0{$A}{redis_read} // 0), 4, 'A: redis_read +4 exactly');
    my %s1 = map { $_ => check_status($_, 'after publishing') } $A, $B;

    $r->stop;
    $r->start;
    ok(node_ready($_, 15), "$name{$_}: up again after a Redis restart") for $A, $B;
    for my $n ($A, $B) {
        my $j = check_status($n, 'after a Redis restart');
        ok(($j->{redis_reconnects} // 0) > ($s1{$n}{redis_reconnects} // 0), "$name{$n}: redis_reconnects went up");
    }
    ok(wait_until(sub { ingress_nodes($A, $B) == 1 }, 8), 'one lease holder again');
    $r->stop;
    ok(wait_redis($_, 'down', 5), "$name{$_}: \"redis\":\"down\" once Redis is stopped") for $A, $B;
    my $p = prometheus($A);
    is($p->{values}{nginx_sse_redis_connected} // '(none)', 0, 'A: nginx_sse_redis_connected 0 while down');
    $r->start;
    ok(node_ready($_, 15), "$name{$_}: up again") for $A, $B;
}

# ---------------------------------------------------------------- without sse_redis
{
    my $off = start_nginx(workers => 1);
    is(status($off)->{redis} // '', 'off', 'without sse_redis: "redis":"off"');
    is(prometheus($off)->{values}{nginx_sse_redis_connected} // '(none)', 0,
       'without sse_redis: nginx_sse_redis_connected 0');
    my $res = $off->publish('/pub/local', 'local');
    is($res->{status}, 201, 'without sse_redis: POST works on the local zone');
    $off->stop;
    is($r->cmd('EXISTS', 'sse:log'), 1, 'sanity: the nodes\' log exists (the check below is not vacuous)');
    ok(!grep({ ($_->{fields}{data} // '') eq 'local' } $r->xrange_all('sse:log')),
       'without sse_redis nothing goes to Redis');
}

# ---------------------------------------------------------------- sse_redis_log 50
{
    my $L = start_node(redis => $r, name => 'L (sse_redis_log 50, prefix small:)',
                       http => "sse_redis_prefix small:;\nsse_redis_log 50;\n");
    my ($bad, $last) = (0);
    for my $i (1 .. 500) {
        my $res = $L->publish('/pub/many', "n $i");
        if ($res->{status} == 201) { $last = $res->{json}{id} } else { $bad++ }
    }
    is($bad, 0, '500 POSTs: all 201');
    my $len = $r->xlen('small:log');
    ok($len >= 50 && $len < 250, "XLEN small:log is $len after 500 publishes (50 kept, trimmed in whole nodes)");
    my ($e) = @{ $r->call('XREVRANGE', 'small:log', '+', '-', 'COUNT', 1) };
    is($e->[0], $last, 'the newest entry is the last POST');
    my $g = $L->http('GET', '/pub/many');
    is($g->{json}{id} // '', $last, 'the node delivered up to the last one');
    $L->stop;
}

# ---------------------------------------------------------------- sse_redis_prefix app1:
{
    my $ph = "sse_redis_prefix app1:;\nsse_history 100;\n";
    my $P1 = start_node(redis => $r, name => 'P1 (prefix app1:)', http => $ph);
    my $P2 = start_node(redis => $r, name => 'P2 (prefix app1:)', http => $ph);
    ok(wait_until(sub { ingress_nodes($P1, $P2) == 1 }, 8), 'one of P1/P2 holds the app1: lease');
    is($r->cmd('EXISTS', 'app1:ingress'), 1, 'the lease key is app1:ingress');
    my @s = map { $_->sse_connect('/events/news') } $P1, $P2;
    my $sse_news = scalar(my @x = $r->log_of('sse:log', 'news'));
    my @want;
    my $res = $P1->publish('/pub/news', 'prefixed post');
    is($res->{status}, 201, 'POST on P1: 201');
    push @want, "$res->{json}{id}=prefixed post";
    my @e = $r->log_of('app1:log', 'news');
    is(join(',', map { "$_->{id}=$_->{fields}{data}" } @e), $want[0], 'the entry is in app1:log');
    is($r->cmd('PUBLISH', 'sse:news', 'wrong prefix'), 1, 'PUBLISH sse:news (A or B takes it, not P1/P2)');
    is($r->cmd('PUBLISH', 'app1:news', 'prefixed publish'), 1, 'PUBLISH app1:news: one receiver');
    ok(wait_until(sub { scalar(my @l = $r->log_of('app1:log', 'news')) == 2 }, 5), 'logged in app1:log');
    push @want, join '', map { "$_->{id}=$_->{fields}{data}" } ($r->log_of('app1:log', 'news'))[1];
    $r->xadd('sse:log', channel => 'news', data => 'wrong log');
    my $id = $r->xadd('app1:log', channel => 'news', data => 'prefixed xadd');
    push @want, "$id=prefixed xadd";
    for my $i (0, 1) {
        my @ev = $s[$i]->read_events(count => 3, timeout => 10);
        is(join(',', map { "$_->{id}=$_->{data}" } @ev), join(',', @want),
           'P' . ($i + 1) . ': the POST, the PUBLISH and the XADD of app1:, none of sse:');
    }
    is(scalar($s[0]->read_events(timeout => 1)), 0, 'P1: nothing more');
    is(scalar(my @y = $r->log_of('sse:log', 'news')), $sse_news + 2,
       'sse:log got only the two sse: events, nothing of the app1: nodes');
    $_->close for @s;
    $P1->stop;
    $P2->stop;
}

$A->stop;
$B->stop;
$r->stop;
done_testing;

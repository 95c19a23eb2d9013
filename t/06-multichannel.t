#!/usr/bin/perl
# Several channels per subscriber: comma lists, id order, resume across
# channels, the 16-channel limit, list syntax errors, channel name rules.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;

my $srv = start_nginx(
    workers => 2,
    server_extra => <<'EOS',
        location = /q { sse_stream $arg_ch; }
EOS
);

sub ids_of { map { $_->{id} // 'undef' } @_ }

# --- events of three channels arrive in id order
my $s = $srv->sse_connect('/events/m1,m2,m3');
is($s->status, 200, 'subscribe m1,m2,m3');
my $other = $srv->sse_connect('/events/m2');
my (@ids, @chs, @data);
my @order = qw(m3 m1 m2 m1 m3 m3 m2 m1 m2 m3 m1 m1 m2 m3 m2);
for my $i (0 .. $#order) {
    my $r = $srv->publish("/pub/$order[$i]", "$order[$i] #$i");
    is($r->{status}, 201, "publish $i to $order[$i]") unless $r->{status} == 201;
    push @ids, $r->{json}{id};
    push @data, "$order[$i] #$i";
}
my @ev = $s->read_events(count => scalar @order, timeout => 5);
push @ev, $s->read_events(timeout => 0.3);
is_deeply([ids_of(@ev)], \@ids, 'multi-channel stream: all events, in id order, once');
is_deeply([map { $_->{data} } @ev], \@data, 'multi-channel stream: data');
ok(ids_strictly_increasing(ids_of(@ev)), 'strictly increasing ids on the stream');
my @m2 = grep { $order[$_] eq 'm2' } 0 .. $#order;
my @ev2 = $other->read_events(count => scalar @m2, timeout => 5);
push @ev2, $other->read_events(timeout => 0.2);
is_deeply([ids_of(@ev2)], [@ids[@m2]], 'single-channel stream: only its channel');
$s->close;
$other->close;

# --- one Last-Event-ID resumes every channel of the stream
for my $k (0, 3, 7, 13) {
    my $r = $srv->sse_connect('/events/m1,m2,m3', headers => { 'Last-Event-ID' => $ids[$k] });
    my @want = @ids[$k + 1 .. $#ids];
    my @got = $r->read_events(count => scalar @want, timeout => 5);
    push @got, $r->read_events(timeout => 0.3);
    is_deeply([ids_of(@got)], \@want, "resume m1,m2,m3 after event $k: the rest, in id order");
    $r->close;
}
{
    my $r = $srv->sse_connect('/events/m3,m1', headers => { 'Last-Event-ID' => $ids[2] });
    my @want = map { $ids[$_] } grep { $_ > 2 && $order[$_] ne 'm2' } 0 .. $#ids;
    my @got = $r->read_events(count => scalar @want, timeout => 5);
    push @got, $r->read_events(timeout => 0.3);
    is_deeply([ids_of(@got)], \@want, 'resume m3,m1 (list order irrelevant): id order, only those channels');
    $r->close;
}

# --- channel list from a variable
{
    my $q = $srv->sse_connect('/q?ch=x1,x2');
    is($q->status, 200, 'sse_stream $arg_ch with a list');
    my $a = $srv->publish('/pub/x2', 'two');
    my $b = $srv->publish('/pub/x1', 'one');
    my @got = $q->read_events(count => 2, timeout => 3);
    is_deeply([ids_of(@got)], [$a->{json}{id}, $b->{json}{id}], '$arg_ch list gets both channels');
    $q->close;
}

# --- 16 channels is fine, 17 is 400
{
    my $list16 = join ',', map { "k$_" } 1 .. 16;
    my $k = $srv->sse_connect("/events/$list16");
    is($k->status, 200, '16 channels: 200');
    my $r = $srv->publish('/pub/k16', 'sixteen');
    my @got = $k->read_events(count => 1, timeout => 3);
    is($got[0]{id} // '', $r->{json}{id}, '16 channels: the 16th channel delivers');
    $r = $srv->publish('/pub/k1', 'first');
    @got = $k->read_events(count => 1, timeout => 3);
    is($got[0]{id} // '', $r->{json}{id}, '16 channels: the 1st channel delivers');
    $k->close;
    ok($srv->wait_stat(subscribers => 0, 3), 'no subscriber left');

    my $before = $srv->stat('subscribers');
    my $list17 = join ',', map { "j$_" } 1 .. 17;
    my $x = $srv->http('GET', "/events/$list17");
    check_json_error($x, 400, '17 channels');
    is($srv->stat('subscribers'), $before, '17 channels: nothing subscribed');
    is($srv->http('GET', '/pub/j1')->{status}, 404, '17 channels: no channel created');
}

# --- duplicates are collapsed
{
    my $d = $srv->sse_connect('/events/dup,dup,other,dup');
    is($d->status, 200, 'duplicate names: 200');
    my $r = $srv->publish('/pub/dup', 'once');
    my @got = $d->read_events(count => 1, timeout => 3);
    push @got, $d->read_events(timeout => 0.5);
    is_deeply([ids_of(@got)], [$r->{json}{id}], 'duplicate names: the event arrives once');
    my $g = $srv->http('GET', '/pub/dup');
    is($g->{json}{subscribers}, 1, 'duplicate names: one subscriber on the channel');
    $d->close;
}

# --- list syntax errors
for my $bad ('a,,b', 'a,', ',a', ',', 'a,%20b', 'a%20,b', 'a,b!', 'ok,bad*name',
             'a,' . ('x' x 129)) {
    my $r = $srv->http('GET', "/events/$bad");
    check_json_error($r, 400, "stream list '$bad'");
}

# --- channel names: allowed characters and length
{
    my $name = 'A-z_0.9:@/x';
    my $c = $srv->sse_connect("/events/$name");
    is($c->status, 200, "name '$name': 200");
    my $r = $srv->publish("/pub/$name", 'punct');
    is($r->{status}, 201, "name '$name': publish 201");
    is($r->{json}{channel}, $name, "name '$name': answer names the channel");
    my @got = $c->read_events(count => 1, timeout => 3);
    is($got[0]{data} // '', 'punct', "name '$name': delivered");
    $c->close;

    my $n128 = 'n' x 128;
    $c = $srv->sse_connect("/events/$n128");
    is($c->status, 200, '128-byte name: 200');
    $r = $srv->publish("/pub/$n128", 'long');
    is($r->{status}, 201, '128-byte name: publish 201');
    @got = $c->read_events(count => 1, timeout => 3);
    is($got[0]{data} // '', 'long', '128-byte name: delivered');
    $c->close;
    check_json_error($srv->http('GET', '/events/' . ('n' x 129)), 400, '129-byte name on stream');
    check_json_error($srv->publish('/pub/' . ('n' x 129), 'x'), 400, '129-byte name on publish');
}

$srv->stop;
done_testing;

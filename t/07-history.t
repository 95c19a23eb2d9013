#!/usr/bin/perl
# History: sse_history count, sse_history 0, sse_history_ttl.
use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use SSETest;
use Time::HiRes qw(time sleep);

my $srv = start_nginx(
    workers => 2,
    http => "sse_history 3;\n",
    server_extra => <<'EOS',
        location ~ ^/pubttl/(.+)$ { sse_publish $1; sse_history_ttl 1s; }
        location ~ ^/pub0/(.+)$ { sse_publish $1; sse_history 0; }
        location ~ ^/pub7/(.+)$ { sse_publish $1; sse_history 7; }
EOS
);

sub ids_of { map { $_->{id} // 'undef' } @_ }

sub replay_all {
    my ($ch, $from, $count) = @_;
    my $s = $srv->sse_connect("/events/$ch", headers => { 'Last-Event-ID' => $from });
    my @ev = $count ? $s->read_events(count => $count, timeout => 3) : ();
    push @ev, $s->read_events(timeout => 0.5);
    return ($s, @ev);
}

# --- sse_history 3 keeps the newest 3
{
    is($srv->stat('history_evicted'), 0, 'history_evicted is 0 at the start');
    my @h;
    for my $i (1 .. 5) {
        push @h, $srv->publish('/pub/h1', "h $i")->{json}{id};
    }
    my $g = $srv->http('GET', '/pub/h1');
    is($g->{status}, 200, 'GET channel');
    is($g->{json}{events}, 3, 'sse_history 3: 3 events kept');
    is($g->{json}{id}, $h[-1], 'GET id is the last id');
    my ($s, @ev) = replay_all('h1', '0-0', 3);
    is_deeply([ids_of(@ev)], [@h[2 .. 4]], 'replay from 0-0: exactly the newest 3');
    is_deeply([map { $_->{data} } @ev], ['h 3', 'h 4', 'h 5'], 'their data');
    $s->close;
    is($srv->stat('history_evicted'), 2, 'status counts the 2 evicted events');
}

# --- a location's own sse_history applies to the channel it publishes
{
    my @h;
    push @h, $srv->publish('/pub7/h7', "h7 $_")->{json}{id} for 1 .. 10;
    is($srv->http('GET', '/pub7/h7')->{json}{events}, 7, 'sse_history 7 in the publish location: 7 kept');
    is($srv->stat('history_evicted'), 2 + 3, 'history_evicted: 3 more');
    my ($s, @ev) = replay_all('h7', '0-0', 7);
    is_deeply([ids_of(@ev)], [@h[3 .. 9]], 'replay: the newest 7');
    $s->close;
}

# --- sse_history 0: live only, nothing kept
{
    my $live = $srv->sse_connect('/events/z1');
    my @z = map { $srv->publish('/pub0/z1', "z $_")->{json}{id} } 1 .. 2;
    my @got = $live->read_events(count => 2, timeout => 3);
    is_deeply([ids_of(@got)], \@z, 'sse_history 0: live subscriber still gets events');
    my ($s, @ev) = replay_all('z1', '0-0');
    is(scalar @ev, 0, 'sse_history 0: nothing replayed');
    my $g = $srv->http('GET', '/pub0/z1');
    is($g->{json}{events}, 0, 'sse_history 0: GET says 0 events kept');
    is($g->{json}{id}, $z[-1], 'sse_history 0: GET still names the last id');
    is($srv->stat('history_evicted'), 5 + 2, 'history_evicted: sse_history 0 drops each event (2 more)');
    $s->close;
    $live->close;
    ok($srv->wait_stat(subscribers => 0, 3), 'subscribers gone');
    is($srv->http('GET', '/pub0/z1')->{status}, 404,
       'sse_history 0, no subscribers: GET is 404');
}

# --- sse_history_ttl 1s
{
    my @t = map { $srv->publish('/pubttl/t1', "t $_")->{json}{id} } 1 .. 3;
    my ($s, @ev) = replay_all('t1', '0-0', 3);
    is_deeply([ids_of(@ev)], \@t, 'ttl 1s: replayed while fresh');
    $s->close;
    ($s, @ev) = replay_all('t1', $t[0], 2);
    is_deeply([ids_of(@ev)], [@t[1, 2]], 'ttl 1s: replay after the first while fresh');
    $s->close;
    sleep 2.1;
    ($s, @ev) = replay_all('t1', '0-0');
    is(scalar @ev, 0, 'ttl 1s: after 2s nothing is replayed from 0-0')
        or diag('got ' . join ' ', ids_of(@ev));
    is($srv->stat('history_evicted'), 7 + 3, 'history_evicted: the 3 expired events count too');
    is($srv->http('GET', '/pubttl/t1')->{json}{events}, 0, 'ttl 1s: GET says 0 events kept');
    my $r = $srv->publish('/pubttl/t1', 'fresh');
    my @live = $s->read_events(count => 1, timeout => 3);
    is_deeply([ids_of(@live)], [$r->{json}{id}], 'ttl 1s: the stream still gets live events');
    $s->close;
    my ($s2, @ev2) = replay_all('t1', $t[0], 1);
    is_deeply([ids_of(@ev2)], [$r->{json}{id}], 'ttl 1s: only the fresh event is replayed');
    $s2->close;
}

$srv->stop;
done_testing;

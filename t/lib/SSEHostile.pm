package SSEHostile;

# What the hostile-input tests (t/70-hostile-*.t) share: a driver for the
# HTTP/2 client t/js/hostile-h2.mjs (one JSON command a line), the check of
# a one-line JSON error answer, one test for many cases, and the check that
# nginx still serves after a batch of bad input.  Perl core modules only.

use strict;
use warnings;

use Test::More ();
use IPC::Open2;
use IO::Select;
use MIME::Base64 qw(decode_base64);
use Time::HiRes qw(time);
use Exporter 'import';

use SSETest qw(json_encode json_decode);

our @EXPORT = qw($NODE h2_client h2 h2_end json_error_problem all_ok hexb still_serving);

our $NODE = $ENV{NODE_BIN} || 'node';

# the HTTP/2 client (t/js/hostile-h2.mjs), one JSON command a line
sub h2_client {
    my $pid = open2(my $out, my $in, $NODE, SSETest::repo_dir() . "/t/js/hostile-h2.mjs");
    $in->autoflush(1);
    return { pid => $pid, out => $out, in => $in, buf => '' };
}

sub h2 {
    my ($h, %c) = @_;
    print { $h->{in} } json_encode(\%c) . "\n";
    my $sel = IO::Select->new($h->{out});
    my $end = time() + ($c{timeout} // 5000) / 1000 + 30;
    while ($h->{buf} !~ /\n/) {
        my $left = $end - time();
        last if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($h->{out}, my $b, 1 << 20);
        last unless $n;
        $h->{buf} .= $b;
    }
    return { error => 'no answer from the node client' } unless $h->{buf} =~ s/\A([^\n]*)\n//;
    my $line = $1;
    my $r = eval { json_decode($line) } // { error => "bad line from node: $line" };
    $r->{body} = decode_base64($r->{body_b64}) if defined $r->{body_b64};
    $r->{data} = decode_base64($r->{data_b64}) if defined $r->{data_b64};
    if (ref $r->{headers} eq 'HASH'
        && ($r->{headers}{'content-type'} // '') =~ m{^application/json}i) {
        $r->{json} = eval { json_decode($r->{body}) };
    }
    return $r;
}

sub h2_end {
    my ($h) = @_;
    h2($h, op => 'exit');
    close $h->{in};
    waitpid($h->{pid}, 0);
}

# '' when $r is the one-line JSON error answer with status $code, else what is wrong
sub json_error_problem {
    my ($r, $code) = @_;
    return "status $r->{status}" . ($r->{error} ? " ($r->{error})" : '')
        unless ($r->{status} // 0) == $code;
    my $ct = $r->{headers}{'content-type'} // '';
    return "Content-Type '$ct'" unless $ct =~ m{^application/json}i;
    my $b = $r->{body} // '';
    my $j = eval { json_decode($b) };
    return 'body ' . SSETest::_show($b)
        unless $b =~ /\A\{[^\r\n]*\}\r?\n?\z/ && ref $j eq 'HASH'
            && defined $j->{error} && !ref $j->{error} && length $j->{error};
    return '';
}

# one test for a list of [name, problem] pairs: passes when no problem
sub all_ok {
    my ($name, @problems) = @_;
    my @bad = grep { $_->[1] ne '' } @problems;
    Test::More::ok(!@bad, $name . ' (' . scalar(@problems) . ' cases)')
        or Test::More::diag(join "\n", map { "  $_->[0]: $_->[1]" } @bad[0 .. ($#bad > 40 ? 40 : $#bad)]);
}

sub hexb { sprintf '0x%02X', $_[0] }

my $ALIVE = 0;
sub still_serving {
    my ($srv, $what) = @_;
    my $ch = 'alive' . ++$ALIVE;
    my $s = $srv->sse_connect("/events/$ch");
    my $r = $srv->publish("/pub/$ch", "alive $ALIVE");
    my @ev = $s->status == 200 ? $s->read_events(count => 1, timeout => 5) : ();
    Test::More::ok($s->status == 200 && $r->{status} == 201 && @ev == 1
       && $ev[0]{data} eq "alive $ALIVE" && ($ev[0]{id} // '') eq ($r->{json}{id} // '-'),
       "after $what: a new subscriber still gets a new publish")
        or Test::More::diag("stream $s->{status}, publish $r->{status}, events " . scalar(@ev));
    $s->close;
}

1;

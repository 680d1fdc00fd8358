// rtbench: the Go half of gorod's runtime benchmarks. bench/rt_bench.c is
// the other half; both take the same command line and print the same line,
//
//	rtbench WORKLOAD [key=value ...]
//	spawn_join p=2 n=1000000 ns_per_op=123.4
//
// so that bench/run-runtime can run them alternately and divide. Keep the two
// programs doing the same work step for step: a change here needs the same
// change there. Exit status: 0, 1 on a wrong result, 2 on bad usage.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// params holds the key=value arguments; -1 means "not given".
type params map[string]int64

var known = []string{"p", "n", "g", "reads", "spawners", "per", "work"}

func (ps params) get(key string, def int64) int64 {
	if v, ok := ps[key]; ok {
		return v
	}
	return def
}

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "rtbench: "+format+"\n", args...)
	os.Exit(1)
}

func usage() {
	fmt.Fprint(os.Stderr, `usage: rtbench WORKLOAD [key=value ...]
  spawn_join p=P n=N            spawn N goroutines that each wg.Done, join; ns per goroutine
  ctxsw n=N                     N round trips between two goroutines, p=1; ns per one-way handoff
  rss n=N [p=P]                 VmRSS growth per parked goroutine; bytes per goroutine
  mutex g=G n=N [p=P]           G goroutines share N lock+unlock ops; ns per op
  rwmutex g=G n=N reads=R [p=P] same, R% read locks; ns per op
  sweep p=P spawners=S per=K work=W
                                S spawners each spawn and join K goroutines that
                                do W rounds of arithmetic; goroutines per second
`)
	os.Exit(2)
}

func parseArgs(args []string) params {
	ps := params{}
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil || n < 0 {
			fmt.Fprintf(os.Stderr, "rtbench: bad argument %q (want key=non-negative integer)\n", a)
			usage()
		}
		found := false
		for _, kk := range known {
			found = found || kk == k
		}
		if !found {
			fmt.Fprintf(os.Stderr, "rtbench: unknown key %q\n", k)
			usage()
		}
		ps[k] = n
	}
	return ps
}

// spawnJoin: the `go` statement's cost, spawn to exit, with an empty body.
func spawnJoin(ps params) {
	p, n := ps.get("p", 1), ps.get("n", 1000000)
	runtime.GOMAXPROCS(int(p))
	var wg sync.WaitGroup
	t0 := time.Now()
	wg.Add(int(n))
	for i := int64(0); i < n; i++ {
		go func(wg *sync.WaitGroup) { wg.Done() }(&wg)
	}
	wg.Wait()
	el := time.Since(t0)
	fmt.Printf("spawn_join p=%d n=%d ns_per_op=%.1f\n", p, n, float64(el.Nanoseconds())/float64(n))
}

// ctxsw: two goroutines hand a token back and forth over unbuffered
// channels on one P. A round trip is two handoffs; we report per handoff.
func ctxsw(ps params) {
	n := ps.get("n", 1000000)
	runtime.GOMAXPROCS(1)
	a, b := make(chan int), make(chan int)
	var wg sync.WaitGroup
	wg.Add(2)
	t0 := time.Now()
	go func() {
		for i := int64(0); i < n; i++ {
			b <- 1
			<-a
		}
		wg.Done()
	}()
	go func() {
		for i := int64(0); i < n; i++ {
			<-b
			a <- 1
		}
		wg.Done()
	}()
	wg.Wait()
	el := time.Since(t0)
	fmt.Printf("ctxsw p=1 n=%d ns_per_op=%.1f\n", n, float64(el.Nanoseconds())/float64(2*n))
}

// vmRSS returns this process's resident set, in kB, from /proc/self/status.
func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		die("%v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "VmRSS:") {
			fs := strings.Fields(line) // "VmRSS:", "1234", "kB"
			if len(fs) != 3 || fs[2] != "kB" {
				die("cannot parse VmRSS line %q", line)
			}
			kb, err := strconv.ParseInt(fs[1], 10, 64)
			if err != nil {
				die("cannot parse VmRSS line %q", line)
			}
			return kb
		}
	}
	die("no VmRSS in /proc/self/status")
	return 0
}

// rss: memory per parked goroutine. Each goroutine counts itself right
// before it parks on a WaitGroup; once all have counted (and a short sleep
// let the last ones actually park) we read VmRSS, then release and join.
func rss(ps params) {
	p, n := ps.get("p", int64(runtime.NumCPU())), ps.get("n", 100000)
	runtime.GOMAXPROCS(int(p))
	var gate, done sync.WaitGroup
	var parked int64
	runtime.GC()
	before := vmRSS()
	gate.Add(1)
	done.Add(int(n))
	for i := int64(0); i < n; i++ {
		go func() {
			atomic.AddInt64(&parked, 1)
			gate.Wait()
			done.Done()
		}()
	}
	for atomic.LoadInt64(&parked) < n {
		runtime.Gosched()
	}
	time.Sleep(20 * time.Millisecond)
	after := vmRSS()
	gate.Done()
	done.Wait()
	fmt.Printf("rss p=%d n=%d rss_before_kb=%d rss_after_kb=%d bytes_per_g=%.1f\n",
		p, n, before, after, float64(after-before)*1024/float64(n))
}

var sinkCounter int64

// locks: g goroutines share n operations on one lock around a trivial
// critical section (a shared counter). reads < 0 means sync.Mutex; otherwise
// sync.RWMutex with reads% of the operations taking the read lock.
func locks(ps params, rw bool) {
	p, g, n := ps.get("p", int64(runtime.NumCPU())), ps.get("g", 4), ps.get("n", 10000000)
	reads := ps.get("reads", 90)
	if g < 1 || reads > 100 {
		usage()
	}
	runtime.GOMAXPROCS(int(p))
	per := n / g
	var mu sync.Mutex
	var rwmu sync.RWMutex
	var wg sync.WaitGroup
	var counter, writes int64
	wg.Add(int(g))
	t0 := time.Now()
	for j := int64(0); j < g; j++ {
		go func(j int64) {
			var seen, wrote int64
			for i := int64(0); i < per; i++ {
				if !rw {
					mu.Lock()
					counter++
					mu.Unlock()
				} else if (i+j)*37%100 >= reads { // *37 spreads the writes out
					rwmu.Lock()
					counter++
					rwmu.Unlock()
					wrote++
				} else {
					rwmu.RLock()
					seen += counter
					rwmu.RUnlock()
				}
			}
			atomic.AddInt64(&sinkCounter, seen)
			atomic.AddInt64(&writes, wrote)
			wg.Done()
		}(j)
	}
	wg.Wait()
	el := time.Since(t0)
	name, want := "mutex", per*g
	if rw {
		name, want = "rwmutex", writes
	}
	if counter != want {
		die("%s: counter is %d, want %d: the lock let two writers in", name, counter, want)
	}
	fmt.Printf("%s p=%d g=%d n=%d", name, p, g, per*g)
	if rw {
		fmt.Printf(" reads=%d", reads)
	}
	fmt.Printf(" ns_per_op=%.1f\n", float64(el.Nanoseconds())/float64(per*g))
}

var sinkWork uint64

// work: `rounds` rounds of xorshift64, a dependent chain the compiler can
// neither vectorize nor fold (~6 cycles a round); the same as rt_bench.c's.
func work(x uint64, rounds int64) uint64 {
	for i := int64(0); i < rounds; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
	}
	return x
}

// sweep: a spawn-heavy load for a GOMAXPROCS sweep. `spawners` goroutines
// each spawn `per` short goroutines, then join them.
func sweep(ps params) {
	p, s, per, w := ps.get("p", 1), ps.get("spawners", 100), ps.get("per", 2000), ps.get("work", 200)
	runtime.GOMAXPROCS(int(p))
	var all sync.WaitGroup
	t0 := time.Now()
	all.Add(int(s))
	for j := int64(0); j < s; j++ {
		go func(seed uint64) {
			var wg sync.WaitGroup
			wg.Add(int(per))
			for i := int64(0); i < per; i++ {
				go func() {
					if work(seed, w) == 0 {
						atomic.AddUint64(&sinkWork, 1)
					}
					wg.Done()
				}()
			}
			wg.Wait()
			all.Done()
		}(uint64(j)*0x9E3779B97F4A7C15 + 1)
	}
	all.Wait()
	el := time.Since(t0)
	fmt.Printf("sweep p=%d spawners=%d per=%d work=%d gor_per_s=%.0f\n",
		p, s, per, w, float64(s*per)/el.Seconds())
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	ps := parseArgs(os.Args[2:])
	switch os.Args[1] {
	case "spawn_join":
		spawnJoin(ps)
	case "ctxsw":
		ctxsw(ps)
	case "rss":
		rss(ps)
	case "mutex":
		locks(ps, false)
	case "rwmutex":
		locks(ps, true)
	case "sweep":
		sweep(ps)
	default:
		fmt.Fprintf(os.Stderr, "rtbench: unknown workload %q\n", os.Args[1])
		usage()
	}
}

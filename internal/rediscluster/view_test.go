package rediscluster

import "testing"

func TestParseNodes(t *testing.T) {
	in := `07c37dfeb235213a872192d90877d0cd55635b91 10.0.0.5:6379@16379,shop-store-1.shop-store-headless.web.svc.cluster.local myself,master - 0 1426238317239 4 connected 0-5460 5461 [5462->-e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 10.0.0.6:6379@16379 master - 0 1426238316232 5 connected 5463-10922 [5462-<-07c37dfeb235213a872192d90877d0cd55635b91]
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f :0@0 slave,fail,noaddr 07c37dfeb235213a872192d90877d0cd55635b91 0 1426238318243 3 disconnected
`
	nodes, err := parseNodes(in)
	if err != nil {
		t.Fatal(err)
	}
	a := nodes["07c37dfeb235213a872192d90877d0cd55635b91"]
	if a.Addr != "10.0.0.5:6379" || a.Hostname != "shop-store-1.shop-store-headless.web.svc.cluster.local" || !a.Flags["myself"] || !a.primary() {
		t.Fatalf("first node %+v", a)
	}
	if a.slotCount() != 5462 || a.Migrating[5462] != "e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca" {
		t.Fatalf("slots %d migrating %v", a.slotCount(), a.Migrating)
	}
	b := nodes["e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca"]
	if b.Importing[5462] != a.ID || b.slotCount() != 10922-5463+1 {
		t.Fatalf("second node %+v", b)
	}
	c := nodes["292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f"]
	if !a.Connected || c.Connected {
		t.Fatalf("link states %v %v", a.Connected, c.Connected)
	}
	if c.MasterID != a.ID || !c.failing() || c.primary() {
		t.Fatalf("third node %+v", c)
	}
	if _, err := parseNodes("x y z"); err == nil {
		t.Fatal("a short line was accepted")
	}
	if _, err := parseNodes("a 1.2.3.4:1@2 master - 0 0 1 connected x-y"); err == nil {
		t.Fatal("a bad slot range was accepted")
	}
}

// Package lab runs the local lab: real hosts in containers on a private
// Docker network, so every drill can be rehearsed on a laptop or in CI before
// it runs against production, and so tests exercise real services.
//
// The lab never pulls an image. Its one image, opsdrill-lab:<hash>, is built
// offline from Debian packages by lab/image/build.sh (`make lab-images`);
// Up fails with ErrImageMissing and says so when it is absent.
// testcontainers-go creates the containers, with its reaper (Ryuk, an image
// from Docker Hub) disabled: TESTCONTAINERS_RYUK_DISABLED is set to true
// unless the environment sets it. Cleanup is explicit instead: every
// container and network carries the label LabelLab=<lab id>, Down removes a
// lab's, DownAll removes every lab's, including what a crashed run left.
//
// Environments (hosts, and later database pair, VPN pair, ...) register
// themselves with RegisterEnv from their own file, much like database/sql
// drivers. An environment lists its hosts (fixed names, resolvable from each
// other on the lab network, fixed addresses), what each needs (NET_ADMIN,
// /dev/net/tun, files, start commands, a readiness probe, ports published on
// 127.0.0.1), a Setup run once all hosts are ready, and the Vars scenarios
// need.
//
// In a program:
//
//	l, err := lab.Up(ctx, lab.Options{Envs: []string{"hosts"}})
//	if err != nil { ... }
//	defer l.Down(ctx)
//	client1, _ := l.Host("client1")
//	res, err := client1.Exec(ctx, "ping", "-c1", "server")
//	vars := l.Vars() // hosts.server.ip, ...
//
// With Options.StateDir set (`opsdrill lab up` uses ".lab"), the lab outlives
// the process: Up writes state.json and vars.yaml there and refuses to start
// a second lab, and Open, Status and Down work from any later process. In
// tests, use package labtest, which skips outside CI when Docker or the image
// is missing and fails in CI.
package lab

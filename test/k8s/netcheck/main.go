// Command netcheck is what the workload pods of make e2e-k8s run:
//
//	netcheck serve PORT        answer each TCP connection with this pod's name
//	netcheck dial ADDR:PORT    print what the server at ADDR answered
//	netcheck addr IFNAME       print the interface's first IPv4 address
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: netcheck serve PORT | dial ADDR:PORT | addr IFNAME")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "netcheck:", err)
		os.Exit(1)
	}
}

func run(cmd, arg string) error {
	switch cmd {
	case "serve":
		l, err := net.Listen("tcp", ":"+arg)
		if err != nil {
			return err
		}
		name, _ := os.Hostname()
		for {
			c, err := l.Accept()
			if err != nil {
				return err
			}
			fmt.Fprintf(c, "hello from %s\n", name)
			c.Close()
		}
	case "dial":
		c, err := net.DialTimeout("tcp", arg, 10*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.Copy(os.Stdout, c)
		return err
	case "addr":
		ifc, err := net.InterfaceByName(arg)
		if err != nil {
			return err
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ip, ok := a.(*net.IPNet); ok && ip.IP.To4() != nil {
				fmt.Println(ip.IP)
				return nil
			}
		}
		return fmt.Errorf("%s has no IPv4 address", arg)
	}
	return fmt.Errorf("unknown command %q", cmd)
}

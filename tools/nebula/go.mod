module github.com/sealmesh/sealmesh/tools/nebula

go 1.26.8

require github.com/slackhq/nebula v1.11.1

require (
	filippo.io/bigmod v0.1.0 // indirect
	github.com/miekg/pkcs11 v1.1.2 // indirect
	github.com/skip2/go-qrcode v0.0.0-20200617195104-da1b6568686e // indirect
	github.com/stefanberger/go-pkcs11uri v0.0.0-20230803200340-78284954bff6 // indirect
	golang.org/x/crypto v0.54.0 // indirect
	golang.org/x/sys v0.47.0 // indirect
	golang.org/x/term v0.45.0 // indirect
	google.golang.org/protobuf v1.36.11 // indirect
)

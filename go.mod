module github.com/hsm-agent/hsm-agent

go 1.26.8

require (
	github.com/ThalesGroup/crypto11 v1.5.0 // indirect
	github.com/miekg/pkcs11 v1.1.2 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/thales-e-security/pool v0.0.2 // indirect
	go.yaml.in/yaml/v3 v3.0.6 // indirect
)

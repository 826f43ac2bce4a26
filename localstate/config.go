// Package localstate is the agent's node-local cache of Flink checkpoint state: an S3-compatible
// gateway (versitygw's S3 front end) that writes through to the real object store and serves
// reads from local disk, lazily loading misses, plus prefetch, peer transfer and a janitor for
// Flink's local-recovery and working directories.
//
// Flink's checkpoint storage points at the gateway (s3.endpoint, path-style); see docs/flink-s3.md.
package localstate

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Config is the agent's `state_cache` section. Zero values take the defaults of DefaultConfig.
type Config struct {
	// Enabled turns the gateway on. Default false.
	Enabled bool `yaml:"enabled"`
	// Listen is the S3 endpoint address Flink points s3.endpoint at. Default 127.0.0.1:9713.
	Listen string `yaml:"listen"`
	// TLSCertFile and TLSKeyFile enable TLS on Listen when both are set. Default: plain HTTP.
	TLSCertFile string `yaml:"tls_cert_file"`
	TLSKeyFile  string `yaml:"tls_key_file"`
	// Region is the SigV4 region clients sign for. Default us-east-1.
	Region string `yaml:"region"`
	// AccessKey and SecretKey are what Flink (s3.access-key/s3.secret-key) signs with. Required when
	// enabled, inline or from AccessKeyFile/SecretKeyFile.
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// AccessKeyFile and SecretKeyFile name files holding AccessKey and SecretKey (a mounted
	// Kubernetes Secret, a systemd credential, a file readable only by the agent); surrounding
	// white space is ignored. A key given both inline and as a file is an error. Default none.
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyFile string `yaml:"secret_key_file"`
	// Dir holds cached objects (Dir/objects) and the pebble index (Dir/index). Default /var/lib/tmwarden/state-cache.
	Dir string `yaml:"dir"`
	// CapacityBytes is the cache quota; least recently used objects are evicted above it. Default 10 GiB.
	CapacityBytes int64 `yaml:"capacity_bytes"`
	// Upstream is the real object store the gateway writes through to.
	Upstream UpstreamConfig `yaml:"upstream"`
	// Peer is how agents fetch from each other (peer transfer): shared credential and mTLS.
	Peer PeerConfig `yaml:"peer"`
	// FetchChunkBytes is the size of one ranged GET when loading a miss. Default 8 MiB.
	FetchChunkBytes int64 `yaml:"fetch_chunk_bytes"`
	// MaxConcurrentFetches caps upstream/peer GETs in flight for cache fills; on-demand reads
	// are served before prefetches. Default 8.
	MaxConcurrentFetches int `yaml:"max_concurrent_fetches"`
	// PassthroughDistanceBytes: a ranged read this far beyond what a running fill has loaded is
	// sent to the upstream directly instead of waiting. Default 32 MiB.
	PassthroughDistanceBytes int64 `yaml:"passthrough_distance_bytes"`
	// Janitor cleans Flink's local-recovery and working directories.
	Janitor JanitorConfig `yaml:"janitor"`
}

// UpstreamConfig addresses the real object store.
type UpstreamConfig struct {
	// Endpoint is the object store URL, e.g. https://s3.eu-west-1.amazonaws.com or http://minio:9000. Required.
	Endpoint string `yaml:"endpoint"`
	// Region of the upstream. Default us-east-1.
	Region string `yaml:"region"`
	// AccessKey and SecretKey are the agent's own upstream credential (inline or from
	// AccessKeyFile/SecretKeyFile). When neither is given, the AWS SDK's default credential chain
	// is used: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, the shared config and credentials files
	// (AWS_PROFILE), web identity (IRSA: AWS_ROLE_ARN and AWS_WEB_IDENTITY_TOKEN_FILE), EKS Pod
	// Identity or ECS container credentials, and the EC2 instance profile (IMDS). Default: the chain.
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// AccessKeyFile and SecretKeyFile read AccessKey and SecretKey from files. Default none.
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyFile string `yaml:"secret_key_file"`
	// PathStyle addresses buckets as path segments. Default true.
	PathStyle *bool `yaml:"path_style"`
	// InsecureSkipVerify disables TLS verification towards the upstream. Default false.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
	// Timeout bounds one upstream request (not a whole body transfer). Default 30s.
	Timeout time.Duration `yaml:"timeout"`
}

// PeerConfig is how agents talk to each other's gateway for peer transfer: a shared credential
// they sign requests with (SigV4) and, optionally, mutual TLS with agent certificates.
type PeerConfig struct {
	// AccessKey and SecretKey are the shared peer credential. Default: the gateway's own
	// AccessKey/SecretKey.
	AccessKey string `yaml:"access_key"`
	SecretKey string `yaml:"secret_key"`
	// AccessKeyFile and SecretKeyFile read AccessKey and SecretKey from files. Default none.
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyFile string `yaml:"secret_key_file"`
	// TLS makes peer requests use https. Default false.
	TLS bool `yaml:"tls"`
	// CAFile is the CA (PEM) that signs the agents' certificates. It turns on peer mTLS: this
	// gateway asks clients for a certificate and serves a request signed with the peer
	// credential only over a connection whose certificate it signed (TaskManagers, which cannot
	// present one, keep working with their own credential); peer requests verify the peer's
	// server certificate with it instead of the system roots. Needs tls_cert_file/tls_key_file,
	// tls: true and an access_key distinct from the gateway's. Reloaded when the file changes.
	// Default none (no client certificates).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this agent's client certificate and key (PEM), presented to
	// peers. They go together; reloaded when the files change. Default none.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// JanitorConfig cleans Flink's task-local recovery and TaskManager working directories.
type JanitorConfig struct {
	// Enabled runs the janitor loop. Default false.
	Enabled bool `yaml:"enabled"`
	// Dirs are local-recovery roots (execution.checkpointing.local-backup.dirs) and working-dir
	// parents (process.taskmanager.working-dir). Default none.
	Dirs []string `yaml:"dirs"`
	// Interval between janitor rounds. Default 5m.
	Interval time.Duration `yaml:"interval"`
	// GracePeriod: a job's or allocation's directory is removed only after it has been unknown for this long
	// and untouched for as long. Default 1h.
	GracePeriod time.Duration `yaml:"grace_period"`
	// BudgetBytes caps the total size of Dirs; above it the oldest directories of unknown jobs go first. 0 = no budget. Default 0.
	BudgetBytes int64 `yaml:"budget_bytes"`
	// DryRun only reports what would be removed. Default true (dry-run first).
	DryRun *bool `yaml:"dry_run"`
}

// LoadKeyFiles reads every *_key_file into its key, so that no key need be written in the
// configuration file itself. It is called before defaults are applied (the peer credential
// defaults to the gateway's).
func (c *Config) LoadKeyFiles() error {
	var errs []error
	for _, k := range []struct {
		name string
		file string
		key  *string
	}{
		{"state_cache.access_key", c.AccessKeyFile, &c.AccessKey},
		{"state_cache.secret_key", c.SecretKeyFile, &c.SecretKey},
		{"state_cache.upstream.access_key", c.Upstream.AccessKeyFile, &c.Upstream.AccessKey},
		{"state_cache.upstream.secret_key", c.Upstream.SecretKeyFile, &c.Upstream.SecretKey},
		{"state_cache.peer.access_key", c.Peer.AccessKeyFile, &c.Peer.AccessKey},
		{"state_cache.peer.secret_key", c.Peer.SecretKeyFile, &c.Peer.SecretKey},
	} {
		if k.file == "" {
			continue
		}
		if *k.key != "" {
			errs = append(errs, fmt.Errorf("%s is given both inline and as %s_file; keep one", k.name, k.name))
			continue
		}
		b, err := os.ReadFile(k.file)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s_file: %w", k.name, err))
			continue
		}
		if *k.key = strings.TrimSpace(string(b)); *k.key == "" {
			errs = append(errs, fmt.Errorf("%s_file %s is empty", k.name, k.file))
		}
	}
	return errors.Join(errs...)
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	c := Config{}
	c.applyDefaults()
	return c
}

func (c *Config) applyDefaults() {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:9713"
	}
	if c.Region == "" {
		c.Region = "us-east-1"
	}
	if c.Dir == "" {
		c.Dir = "/var/lib/tmwarden/state-cache"
	}
	if c.CapacityBytes == 0 {
		c.CapacityBytes = 10 << 30
	}
	if c.Upstream.Region == "" {
		c.Upstream.Region = "us-east-1"
	}
	if c.Upstream.PathStyle == nil {
		t := true
		c.Upstream.PathStyle = &t
	}
	if c.Upstream.Timeout == 0 {
		c.Upstream.Timeout = 30 * time.Second
	}
	if c.Peer.AccessKey == "" {
		c.Peer.AccessKey, c.Peer.SecretKey = c.AccessKey, c.SecretKey
	}
	if c.FetchChunkBytes == 0 {
		c.FetchChunkBytes = 8 << 20
	}
	if c.MaxConcurrentFetches == 0 {
		c.MaxConcurrentFetches = 8
	}
	if c.PassthroughDistanceBytes == 0 {
		c.PassthroughDistanceBytes = 32 << 20
	}
	if c.Janitor.Interval == 0 {
		c.Janitor.Interval = 5 * time.Minute
	}
	if c.Janitor.GracePeriod == 0 {
		c.Janitor.GracePeriod = time.Hour
	}
	if c.Janitor.DryRun == nil {
		t := true
		c.Janitor.DryRun = &t
	}
}

// CheckLimits refuses numbers a configuration file set where they make no sense, naming the
// option. The agent's defaults (DefaultConfig) are what its file is decoded onto, so a 0 here
// was written, and New would otherwise replace it with the default. A budget_bytes of 0 is
// meaningful (no budget) and accepted.
func (c Config) CheckLimits() error {
	var errs []error
	for _, o := range []struct {
		name string
		v    int64
	}{
		{"capacity_bytes", c.CapacityBytes},
		{"fetch_chunk_bytes", c.FetchChunkBytes},
		{"max_concurrent_fetches", int64(c.MaxConcurrentFetches)},
		{"passthrough_distance_bytes", c.PassthroughDistanceBytes},
		{"upstream.timeout", int64(c.Upstream.Timeout)},
		{"janitor.interval", int64(c.Janitor.Interval)},
		{"janitor.grace_period", int64(c.Janitor.GracePeriod)},
	} {
		if o.v <= 0 {
			errs = append(errs, fmt.Errorf("state_cache.%s: must be positive (omit it for the default)", o.name))
		}
	}
	if c.Janitor.BudgetBytes < 0 {
		errs = append(errs, fmt.Errorf("state_cache.janitor.budget_bytes %d is negative (0 means no budget)", c.Janitor.BudgetBytes))
	}
	return errors.Join(errs...)
}

// Validate reports the first problem in an enabled configuration.
func (c *Config) Validate() error {
	var errs []error
	if c.AccessKey == "" || c.SecretKey == "" {
		errs = append(errs, errors.New("state_cache: access_key and secret_key are required"))
	}
	if c.Upstream.Endpoint == "" {
		errs = append(errs, errors.New("state_cache.upstream.endpoint is required"))
	}
	if (c.Upstream.AccessKey == "") != (c.Upstream.SecretKey == "") {
		errs = append(errs, errors.New("state_cache.upstream: access_key and secret_key go together (neither: the AWS default credential chain)"))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("state_cache: tls_cert_file and tls_key_file go together"))
	}
	if c.Peer.CAFile != "" {
		if c.TLSCertFile == "" {
			errs = append(errs, errors.New("state_cache.peer.ca_file requires tls_cert_file and tls_key_file: peers present their certificates in the gateway's TLS handshake"))
		}
		if !c.Peer.TLS {
			errs = append(errs, errors.New("state_cache.peer.ca_file requires state_cache.peer.tls: true"))
		}
		// The access key is what tells a peer request from a TaskManager's; if both sign with
		// the same key, either TaskManagers would need certificates or peers would not.
		if peer := cmp.Or(c.Peer.AccessKey, c.AccessKey); peer == c.AccessKey {
			errs = append(errs, errors.New("state_cache.peer.ca_file requires a state_cache.peer.access_key different from state_cache.access_key"))
		}
	}
	if (c.Peer.CertFile == "") != (c.Peer.KeyFile == "") {
		errs = append(errs, errors.New("state_cache.peer: cert_file and key_file go together"))
	}
	if c.CapacityBytes < 0 {
		errs = append(errs, fmt.Errorf("state_cache.capacity_bytes %d is negative", c.CapacityBytes))
	}
	if c.FetchChunkBytes < 64<<10 {
		errs = append(errs, fmt.Errorf("state_cache.fetch_chunk_bytes %d is below 64 KiB", c.FetchChunkBytes))
	}
	return errors.Join(errs...)
}

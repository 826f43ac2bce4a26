package localstate

import (
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/versity/versitygw/auth"
	"github.com/versity/versitygw/backend"
	"github.com/versity/versitygw/backend/posix"
)

type s3apiBackend = backend.Backend

type authAccount = auth.Account

func rootAccount(access, secret string) auth.Account {
	return auth.Account{Access: access, Secret: secret, Role: auth.RoleAdmin}
}

// throttled is the posix backend with object reads paced to an object store's bandwidth.
type throttled struct {
	*posix.Posix
	lim *limiter
}

func staticCreds(access, secret string) credentials.StaticCredentialsProvider {
	return credentials.NewStaticCredentialsProvider(access, secret, "")
}

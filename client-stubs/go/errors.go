package kafkad

import (
	"errors"
	"fmt"
)

// Error is an error the daemon answered with (protocol SPEC section 3,
// codes 1..15), or the same kind of error detected by the client first
// (for example a message too large for a frame). Compare with errors.Is
// against the Err* sentinels, which match by Code.
type Error struct {
	Code      int
	Name      string
	Message   string
	Retriable bool
}

func (e *Error) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("kafkad: %s (%d)", e.Name, e.Code)
	}
	return fmt.Sprintf("kafkad: %s (%d): %s", e.Name, e.Code, e.Message)
}

// Is reports whether target is an *Error with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Protocol error sentinels (SPEC section 3). Errors returned by the client
// wrap *Error values carrying the daemon's message; errors.Is matches them
// to these by code.
var (
	ErrBadFrame           = &Error{Code: 1, Name: "BAD_FRAME"}
	ErrBadRequest         = &Error{Code: 2, Name: "BAD_REQUEST"}
	ErrUnknownOp          = &Error{Code: 3, Name: "UNKNOWN_OP"}
	ErrInvalidArgument    = &Error{Code: 4, Name: "INVALID_ARGUMENT"}
	ErrUnknownCluster     = &Error{Code: 5, Name: "UNKNOWN_CLUSTER"}
	ErrUnsupportedVersion = &Error{Code: 6, Name: "UNSUPPORTED_VERSION"}
	ErrTimedOut           = &Error{Code: 7, Name: "TIMED_OUT", Retriable: true}
	ErrInvalidState       = &Error{Code: 8, Name: "INVALID_STATE"}
	ErrShuttingDown       = &Error{Code: 9, Name: "SHUTTING_DOWN", Retriable: true}
	ErrNotSupported       = &Error{Code: 10, Name: "NOT_SUPPORTED"}
	ErrInternal           = &Error{Code: 11, Name: "INTERNAL"}
	ErrTooLarge           = &Error{Code: 12, Name: "TOO_LARGE"}
	ErrUnknownHandle      = &Error{Code: 13, Name: "UNKNOWN_HANDLE"}
	ErrNotOwner           = &Error{Code: 14, Name: "NOT_OWNER"}
	ErrNotAssigned        = &Error{Code: 15, Name: "NOT_ASSIGNED"}
)

var protocolErrors = []*Error{
	ErrBadFrame, ErrBadRequest, ErrUnknownOp, ErrInvalidArgument, ErrUnknownCluster,
	ErrUnsupportedVersion, ErrTimedOut, ErrInvalidState, ErrShuttingDown, ErrNotSupported,
	ErrInternal, ErrTooLarge, ErrUnknownHandle, ErrNotOwner, ErrNotAssigned,
}

// Client-side conditions.
var (
	// ErrConnectionLost: the connection to the daemon is gone (the daemon
	// closed it, died, or the client was closed). Requests that were sent may
	// still have taken effect: every fully sent produce request is delivered
	// by the daemon.
	ErrConnectionLost = errors.New("kafkad: connection lost")
	// ErrClosed: the Client was closed by Close. Errors matching ErrClosed
	// also match ErrConnectionLost.
	ErrClosed = errors.New("kafkad: client closed")
	// ErrProtocol: the daemon sent something that does not follow the
	// protocol (a client or daemon bug).
	ErrProtocol = errors.New("kafkad: protocol violation")
)

// connError is the error of a dead connection: matches ErrConnectionLost,
// and ErrClosed when Close caused it.
type connError struct {
	closed bool
	cause  error
}

func (e *connError) Error() string {
	if e.closed {
		return "kafkad: client closed"
	}
	if e.cause != nil {
		return "kafkad: connection lost: " + e.cause.Error()
	}
	return "kafkad: connection lost"
}

func (e *connError) Is(target error) bool {
	return target == ErrConnectionLost || (e.closed && target == ErrClosed)
}

func (e *connError) Unwrap() error { return e.cause }

// KafkaErrorBase is added to librdkafka's rd_kafka_resp_err_t to form the
// protocol code of a Kafka error (negative librdkafka codes give 98xx).
const KafkaErrorBase = 10000

// kafkaErrorMin: codes from here on are Kafka errors (room for librdkafka's
// negative, client-side codes).
const kafkaErrorMin = KafkaErrorBase - 1000

// KafkaError is an error from Kafka or librdkafka: Code is the protocol code
// (10000 + librdkafka's code, e.g. 10003 UNKNOWN_TOPIC_OR_PART, 9808
// _MSG_TIMED_OUT), Name is rd_kafka_err2name.
type KafkaError struct {
	Code      int
	Name      string
	Message   string
	Retriable bool
}

func (e *KafkaError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("kafka: %s (%d)", e.Name, e.RdKafkaCode())
	}
	return fmt.Sprintf("kafka: %s (%d): %s", e.Name, e.RdKafkaCode(), e.Message)
}

// RdKafkaCode is librdkafka's rd_kafka_resp_err_t value.
func (e *KafkaError) RdKafkaCode() int { return e.Code - KafkaErrorBase }

// Is matches a *KafkaError with the same code, or one of the ErrKafka*
// sentinels that covers this code.
func (e *KafkaError) Is(target error) bool {
	switch t := target.(type) {
	case *KafkaError:
		return t.Code == e.Code
	case *kafkaSentinel:
		for _, c := range t.codes {
			if c == e.Code {
				return true
			}
		}
	}
	return false
}

type kafkaSentinel struct {
	name  string
	codes []int
}

func (s *kafkaSentinel) Error() string { return "kafka: " + s.name }

func kafkaCodes(rd ...int) []int {
	out := make([]int, len(rd))
	for i, c := range rd {
		out[i] = KafkaErrorBase + c
	}
	return out
}

// Sentinels for common Kafka errors, for errors.Is.
var (
	// UNKNOWN_TOPIC_OR_PART (3) or _UNKNOWN_TOPIC (-188).
	ErrKafkaUnknownTopic error = &kafkaSentinel{"unknown topic", kafkaCodes(3, -188)}
	// _UNKNOWN_PARTITION (-190).
	ErrKafkaUnknownPartition error = &kafkaSentinel{"unknown partition", kafkaCodes(-190)}
	// _MSG_TIMED_OUT (-192): not delivered within message.timeout.ms.
	ErrKafkaMsgTimedOut error = &kafkaSentinel{"message timed out", kafkaCodes(-192)}
	// MSG_SIZE_TOO_LARGE (10).
	ErrKafkaMsgSizeTooLarge error = &kafkaSentinel{"message size too large", kafkaCodes(10)}
	// _TIMED_OUT (-185) or REQUEST_TIMED_OUT (7).
	ErrKafkaTimedOut error = &kafkaSentinel{"timed out", kafkaCodes(-185, 7)}
	// _TRANSPORT (-195) or _ALL_BROKERS_DOWN (-187).
	ErrKafkaTransport error = &kafkaSentinel{"broker transport failure", kafkaCodes(-195, -187)}
	// _QUEUE_FULL (-184).
	ErrKafkaQueueFull error = &kafkaSentinel{"queue full", kafkaCodes(-184)}
	// OFFSET_OUT_OF_RANGE (1).
	ErrKafkaOffsetOutOfRange error = &kafkaSentinel{"offset out of range", kafkaCodes(1)}
	// TOPIC_AUTHORIZATION_FAILED (29) or GROUP_AUTHORIZATION_FAILED (30).
	ErrKafkaAuthorization error = &kafkaSentinel{"authorization failed", kafkaCodes(29, 30)}
)

// IsRetriable reports whether err is an error the daemon marked retriable.
func IsRetriable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Retriable
	}
	var k *KafkaError
	if errors.As(err, &k) {
		return k.Retriable
	}
	return false
}

// newWireError builds the error for an error map's fields.
func newWireError(code int, name, message string, retriable bool) error {
	if code >= kafkaErrorMin {
		return &KafkaError{Code: code, Name: name, Message: message, Retriable: retriable}
	}
	if name == "" {
		for _, p := range protocolErrors {
			if p.Code == code {
				name = p.Name
			}
		}
		if name == "" {
			name = "UNKNOWN_ERROR"
		}
	}
	return &Error{Code: code, Name: name, Message: message, Retriable: retriable}
}

// readError decodes an error map (SPEC section 3) at d.
func (d *decoder) readError() (error, error) {
	var (
		code      int64
		name, msg string
		retriable bool
		haveCode  bool
	)
	err := d.eachMapKey(func(k []byte) error {
		var err error
		switch string(k) {
		case "code":
			code, err = d.readInt()
			haveCode = true
		case "name":
			name, err = d.readStr()
		case "message":
			msg, err = d.readStr()
		case "retriable":
			retriable, err = d.readBool()
		default:
			err = d.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if !haveCode {
		return nil, &decodeError{"error map without code"}
	}
	return newWireError(int(code), name, msg, retriable), nil
}

// readErrorOrNil reads nil or an error map.
func (d *decoder) readErrorOrNil() (error, error) {
	if d.tryNil() {
		return nil, nil
	}
	return d.readError()
}

func protocolErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, args...)...)
}

/**
 * The one registry of roam's error codes. Every error that leaves a module
 * carries one of these; the API maps them to HTTP status codes and the CLI
 * prints them. Keep each description true: docs/ERRORS.md is generated from
 * nowhere else.
 */
export const ErrorCodes = {
  CONFIG_INVALID: { status: 400, description: 'The agent configuration file is missing, not JSON, or violates the schema; the message names the field.' },
  INPUT_INVALID: { status: 400, description: 'A request or command-line argument is malformed; the message names the field and why.' },
  UNAUTHENTICATED: { status: 401, description: 'A request to the control API over the network carried no bearer token, or a wrong one.' },
  FORBIDDEN: { status: 403, description: "A peer's request names a node, an address or a migration its TLS certificate does not speak for; the message names the peer and what it may not do." },
  NOT_FOUND: { status: 404, description: 'The named endpoint or node does not exist.' },
  CONFLICT: { status: 409, description: 'The request conflicts with existing state (name or address taken, endpoint busy).' },
  ADDRESS_EXHAUSTED: { status: 409, description: "The node's allocation range has no free address left." },
  ENDPOINT_START_FAILED: { status: 422, description: 'The endpoint program could not be started (e.g. the command does not exist); nothing was left behind.' },
  PEER_UNREACHABLE: { status: 502, description: 'Another agent did not answer on the underlay.' },
  PEER_PROTOCOL: { status: 502, description: 'Another agent answered with a message that does not match the wire schema.' },
  CHECKPOINT_FAILED: { status: 500, description: 'CRIU refused or failed a dump or restore; the message quotes the error lines of its log.' },
  CONTAINER_FAILED: { status: 500, description: "runc failed to run, checkpoint or restore a container, or its files (root filesystem changes, volumes, image) could not be copied; the message quotes runc's or tar's error." },
  MIGRATION_FAILED: { status: 500, description: 'A migration did not complete; the handover report says in which phase, why, and where the service runs now.' },
  SYSCALL_FAILED: { status: 500, description: 'A kernel operation failed; errno, operation and target are attached.' },
  PRECONDITION: { status: 500, description: 'The host lacks something roam needs (root, a kernel feature, a binary); the message says what.' },
  TOO_LARGE: { status: 413, description: "A peer's upload (images, a container's files or image, held packets) is larger than this node allows (config limits); it was refused before more was read, and nothing of it kept." },
  UPLOAD_STALLED: { status: 408, description: "A peer's upload moved no byte for longer than this node waits (config limits.uploadIdleSeconds); it was cut off and nothing of it kept." },
  NO_SPACE: { status: 507, description: "This node's state directory has too little free space for an arrival (config limits.reserveFreeBytes is kept free); the message says how much is free and how much was asked." },
  CERTIFICATE_UNAVAILABLE: { status: 503, description: 'The agent could not get its peer certificate from the cluster: the signer denied or failed the request, issued a certificate that does not name this node, or did not answer in time; the message names the CertificateSigningRequest.' },
  TESTBED: { status: 500, description: 'The testbed could not be brought up or down; the message names the step.' },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export function httpStatusOf(code: ErrorCode): number {
  return ErrorCodes[code].status;
}

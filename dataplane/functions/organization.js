// Allow only viewers of one organisation, or whose certificate names a host under a partner
// domain (a subject alternative name pattern); deny everyone else, and say why in the
// connection log. Subjects read `C=US, O=Example, CN=client`; subjectAlternativeNames is a
// Portcullis extension (`DNS:host`, `IP:addr`, `URI:uri`, `email:addr`).
const ORGANIZATION = "O=Portcullis Demo";
const SAN_PATTERN = /^DNS:[a-z0-9-]+\.partners\.example$/;

function connectionHandler(connection) {
    const leaf = connection.clientCertificate?.certificates.leaf;
    if (leaf === undefined) {
        connection.logCustomData("no client certificate");
        return connection.deny();
    }
    const inOrganization = leaf.subject.split(", ").includes(ORGANIZATION);
    const partner = (leaf.subjectAlternativeNames ?? []).find((name) => SAN_PATTERN.test(name));
    if (inOrganization || partner !== undefined) {
        connection.logCustomData(`allowed: ${partner ?? ORGANIZATION}`);
        return connection.allow();
    }
    connection.logCustomData(`not an allowed organisation: ${leaf.subject}`);
    return connection.deny();
}

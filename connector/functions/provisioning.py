"""Queue worker: drive one phone-number provisioning through ACS's long-running operations.

Transient failures (ACS busy or unreachable, a credential outage, ACS still buying the
number, storage) and unexpected errors raise, so the host retries the message and finally
parks it in ``<queue>-poison`` (the operation then shows as failed once it is stale); a
definite "no" from ACS is recorded on the operation for the admin. Log lines (logger
``connector.provisioning``) carry the operation id and the error class only.
"""

import azure.functions as func

from connector import telemetry
from connector.composition import container
from connector.services.sms_numbers import ProvisioningRequest

bp = func.Blueprint()


@bp.queue_trigger(arg_name="msg", queue_name="%CONNECTOR_PROVISIONING_QUEUE%", connection="AzureWebJobsStorage")
@telemetry.traced("queue")
def provision_number_worker(msg: func.QueueMessage) -> None:
    request = ProvisioningRequest.model_validate_json(msg.get_body())
    telemetry.tag(tenant=request.tenant_id, operation_id=request.operation_id)
    container().number_provisioning.run(request)
